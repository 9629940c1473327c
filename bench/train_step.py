"""Train step: aplt_jax's jitted TSM-ResNet-18 against the same model in PyTorch, on the CPU.

    python bench/train_step.py [--batch 4] [--frames 8] [--size 112] [--repeats 5]

Both sides train the same network on the same input shapes: torchvision's ResNet-18 with the
temporal shift (1/8 of the channels each way, before the first conv of every residual branch),
per-frame features averaged over time, a linear head, cross-entropy, SGD with Nesterov momentum
and weight decay, BatchNorm in training mode, float32. Both use every core. PyTorch runs in its
default NCHW layout and in channels-last; the ratio is taken against the faster of the two.
Steps are timed round-robin (jax, torch, torch-cl, jax, ...) and each cell is the median.
Needs `pip install -r bench/requirements.txt` (torch, torchvision).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top
import model_step  # noqa: E402  pylint: disable=g-import-not-at-top

import numpy as np  # noqa: E402


def torch_step(batch: int, frames: int, size: int, num_classes: int, channels_last: bool,
               seed: int = 0):
  """A PyTorch TSM-ResNet-18 train step; returns `run() -> loss` over a fixed batch."""
  import torch  # pylint: disable=g-import-not-at-top
  import torchvision  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(seed)

  class TemporalShift(torch.nn.Module):
    """[B*T, C, H, W]: channels [0, C/8) from frame t+1, [C/8, C/4) from t-1, zero-filled."""

    def __init__(self, t: int, div: int = 8):
      super().__init__()
      self.t, self.div = t, div

    def forward(self, x):
      bt, c, h, w = x.shape
      v = x.view(bt // self.t, self.t, c, h, w)
      fold = c // self.div
      out = torch.zeros_like(v)
      out[:, :-1, :fold] = v[:, 1:, :fold]
      out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
      out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
      return out.view(bt, c, h, w)

  net = torchvision.models.resnet18(num_classes=num_classes)
  for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
    for block in layer:
      block.conv1 = torch.nn.Sequential(TemporalShift(frames), block.conv1)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  net = net.to(memory_format=fmt).train()
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                        weight_decay=5e-4)
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  gen = np.random.default_rng(seed)
  x = torch.from_numpy(gen.random((batch * frames, 3, size, size), dtype=np.float32))
  x = x.contiguous(memory_format=fmt)
  y = torch.from_numpy(gen.integers(0, num_classes, batch))

  def run():
    opt.zero_grad(set_to_none=True)
    logits = net((x - mean) / std).view(batch, frames, -1).mean(1)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    opt.step()
    return float(loss.detach())

  return run


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--frames", type=int, default=8)
  p.add_argument("--size", type=int, default=112)
  p.add_argument("--classes", type=int, default=52)
  p.add_argument("--repeats", type=int, default=5)
  a = p.parse_args(argv)
  common.header("Train step: TSM-ResNet-18, JAX vs PyTorch (CPU)",
                "python bench/train_step.py " + " ".join(sys.argv[1:] if argv is None else argv))
  import torch  # pylint: disable=g-import-not-at-top
  ms = model_step.build(18, batch=a.batch, frames=a.frames, size=a.size,
                        num_classes=a.classes)
  x, y = ms.batch(0)
  holder = {"state": ms.state}

  def jax_run():
    holder["state"], loss = ms.step(holder["state"], x, y)
    return float(loss)

  cands = {"aplt_jax (jit, donated state)": jax_run,
           "PyTorch (NCHW)": torch_step(a.batch, a.frames, a.size, a.classes, False),
           "PyTorch (channels-last)": torch_step(a.batch, a.frames, a.size, a.classes, True)}
  times = common.interleaved(cands, a.repeats, warmup=2)
  clips = {k: a.batch / common.median(v) for k, v in times.items()}
  print(f"input [B={a.batch}, T={a.frames}, {a.size}x{a.size}x3] float32, "
        f"{ms.num_params / 1e6:.2f}M parameters, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), median of {a.repeats} interleaved steps\n")
  rows = [[k, common.median(v), common.spread(v), clips[k]] for k, v in times.items()]
  print(common.table(["implementation", "s/step", "step min-max", "clips/s"], rows))
  best_torch = max(v for k, v in clips.items() if k.startswith("PyTorch"))
  ours = clips["aplt_jax (jit, donated state)"]
  print()
  print(common.table(["ours clips/s", "best PyTorch clips/s", "ours/PyTorch (target >= 1)"],
                     [[ours, best_torch, ours / best_torch]]))


if __name__ == "__main__":
  main()
