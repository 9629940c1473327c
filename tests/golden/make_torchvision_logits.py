"""Writes tests/golden/torchvision_resnet_logits.json: torchvision's logits for the numpy weights.

Run once where torch is installed (requirements-torch.txt), from the repository root:
  python tests/golden/make_torchvision_logits.py
tests/test_pretrained.py then checks the Flax port against these logits without torch.
"""
import json
import os
import sys

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for resnet_golden
import resnet_golden as golden  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repository root
from aplt_jax.models.tsm_resnet import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def logits(depth: int) -> np.ndarray:
  """[BATCH, NUM_CLASSES] of torchvision's resnet{depth} (eval mode) on golden.inputs(depth)."""
  net = getattr(torchvision.models, f"resnet{depth}")(weights=None,
                                                       num_classes=golden.NUM_CLASSES)
  net.load_state_dict({k: torch.from_numpy(v) for k, v in golden.state_dict(depth).items()})
  x = (golden.inputs(depth) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(
      IMAGENET_STD, np.float32)
  with torch.no_grad():
    return net.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).double().numpy()


def main():
  torch.set_num_threads(1)  # one summation order
  out = {"torch": torch.__version__, "torchvision": torchvision.__version__,
         "numpy": np.__version__, "script": "tests/golden/make_torchvision_logits.py",
         "resnets": {}}
  for depth in (18, 50):
    out["resnets"][str(depth)] = {"weights_checksum": golden.checksum(golden.state_dict(depth)),
                                  "logits": logits(depth).tolist()}
  path = os.path.join(HERE, "torchvision_resnet_logits.json")
  with open(path, "w") as f:
    json.dump(out, f, indent=1)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
