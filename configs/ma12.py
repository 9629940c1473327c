"""MA-12 (12 micro-actions, MA-52's list-file layout), paper-scale: TSM-ResNet-50, 8 x 224 px.

The paper's headline setting: 50% labels, where it reports +14.5 points over FixMatch.
"""
from configs import ma52


def get_config(method: str = "aplt"):
  c = ma52.get_config(method)
  c.data.name = "ma12"
  c.data.num_classes = 12
  c.data.eval_split = "test"
  c.data.labeled_ratio = 0.5
  c.total_steps = 20_000
  c.warmup_steps = 1_000
  return c
