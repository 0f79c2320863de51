"""The diagnosis tool's MLP probe learns what a linear probe cannot (a test that can fail)."""

import numpy as np

from rmr_dist.tools import atari_diagnosis


def _data(n, seed):
  """Features [n, 8] and RAM [n, 128]: slot 0's top bit is the XOR of two features' signs (no
  linear probe reads it), slot 1's top bit the sign of a third."""
  x = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
  ram = np.zeros((n, 128), np.uint8)
  ram[:, 0] = 128 * ((x[:, 0] > 0) != (x[:, 1] > 0))
  ram[:, 1] = 128 * (x[:, 2] > 0)
  return x, ram


def test_mlp_probe_reads_an_xor_bit():
  train_x, train_ram = _data(2000, 0)
  val_x, val_ram = _data(1000, 1)
  f1, steps = atari_diagnosis.mlp_probe_f1(train_x, train_ram, val_x, val_ram, hidden=64,
                                     components=8, seed=0, max_steps=4000)
  assert f1 > 0.9, f1  # Both scored bits, the XOR one included.
  assert 0 < steps <= 4000
