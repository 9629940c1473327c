"""Your own videos (class folders), at the MA-52 configuration's scale: TSM-ResNet-50, 8 x 224 px.

Prepare once, then train, giving the number of class folders:
  python -m aplt_jax.prepare --dataset=class_folder --manual_dir=VIDEOS --data_dir=PREPARED
  python main.py --config=configs/videos.py --workdir=RUN --config.data.data_dir=PREPARED \
      --config.data.num_classes=K [--config.model.pretrained=resnet50.safetensors]
Evaluation uses the held-out `test` split (VIDEOS/test/<class>/..., or 20% of each class).
For list files in the MA-52 layout with your own classes, add --config.data.name=list_files.
"""
from configs import ma52


def get_config(method: str = "aplt"):
  c = ma52.get_config(method)
  c.data.name = "class_folder"
  c.data.eval_split = "test"
  # The generic stored size (configs/default.py): square 128 px frames, model input 112 px.
  c.data.video.height = 128
  c.data.video.width = 128
  c.model.image_size = 112
  c.total_steps = 10_000
  c.warmup_steps = 500
  return c
