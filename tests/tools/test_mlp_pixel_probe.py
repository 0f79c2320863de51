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


def test_mlp_byte_probe_reads_an_xor_variable_scored_by_category():
  """Pong's player_y (RAM 51) is the XOR of two features' signs, ball_x (RAM 49) the sign of a
  third; the other labelled bytes are constant, so the entropy filter drops them."""
  def data(n, seed):
    x = np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)
    ram = np.zeros((n, 128), np.uint8)
    ram[:, 51] = 40 + 100 * ((x[:, 0] > 0) != (x[:, 1] > 0))
    ram[:, 49] = 7 + 3 * (x[:, 2] > 0)
    return x, ram

  train_x, train_ram = data(2000, 0)
  val_x, val_ram = data(1000, 1)
  across, per_variable, steps = atari_diagnosis.mlp_byte_probe_f1(
      train_x, train_ram, val_x, val_ram, 'pong', hidden=64, components=8, seed=0,
      max_steps=4000)
  assert set(per_variable) == {'player_y', 'ball_x'}, per_variable
  assert per_variable['player_y'] > 0.9 and per_variable['ball_x'] > 0.9, per_variable
  # Two categories (agent localisation, small object localisation): the mean of their means.
  assert abs(across - (per_variable['player_y'] + per_variable['ball_x']) / 2) < 1e-3
  assert 0 < steps <= 4000
  assert atari_diagnosis.mlp_byte_probe_f1(train_x, train_ram, val_x, val_ram, 'no_such_game',
                                           hidden=8, components=8, seed=0) is None
