"""Tests for rmr_dist.learning.loop's pmap helpers: replicate, shard_batch, unreplicate."""

import jax
import numpy as np
import pytest

from rmr_dist.learning import loop


def test_shard_batch_shapes_and_error():
  rng = np.random.default_rng(0)
  batch = {'ram_t': rng.integers(0, 256, (6, 128), dtype=np.uint8),
           'action': np.eye(18, dtype=np.uint8)[rng.integers(0, 18, 6)],
           'ram_tp1': rng.integers(0, 256, (6, 128), dtype=np.uint8)}
  sharded = loop.shard_batch(batch, 2)
  assert sharded['ram_t'].shape == (2, 3, 128) and sharded['action'].shape == (2, 3, 18)
  np.testing.assert_array_equal(sharded['ram_tp1'][1], batch['ram_tp1'][3:])
  with pytest.raises(ValueError, match='Batch size 6 is not divisible by the 4 devices'):
    loop.shard_batch(batch, 4)


def test_replicate_then_unreplicate_round_trips():
  tree = {'w': np.arange(6.0).reshape(2, 3), 'step': np.int32(4)}
  devices = jax.local_devices()[:2]
  replicated = loop.replicate(tree, devices)
  assert replicated['w'].shape == (2, 2, 3) and replicated['step'].shape == (2,)
  back = loop.unreplicate(replicated)
  np.testing.assert_array_equal(back['w'], tree['w'])
  assert back['step'] == 4
