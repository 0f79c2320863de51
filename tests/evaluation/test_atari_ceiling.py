"""Tests for rmr_dist.evaluation.atari_ceiling: f~ trained end to end on RAM labels."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rmr_dist.evaluation import atari_ceiling


def _encode_fn(p, x):  # [B, 4, 4, 3] uint8 -> [B, 4 slots, 3]
  flat = x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0  # [B, 48]
  return jnp.tanh(flat @ p['w']).reshape(x.shape[0], 4, 3)


def _tiny_set(n: int = 96, seed: int = 0):
  """Frames whose pixel (0, 0) is Pong's ball_x byte and whose pixel (1, 1) is player_y (the
  RAM labels), 8 episodes of 12 frames."""
  rng = np.random.default_rng(seed)
  ram = np.zeros((n, 128), np.uint8)
  ram[:, 49] = rng.choice([20, 60, 100, 140], n)  # ball_x
  ram[:, 51] = rng.choice([30, 200], n)  # player_y
  frames = rng.integers(0, 30, (n, 4, 4, 3)).astype(np.uint8)
  frames[:, 0, 0, :] = ram[:, 49:50]
  frames[:, 1, 1, :] = ram[:, 51:52]
  return frames, ram, np.arange(n) // 12


def _init():
  return {'w': 0.1 * jax.random.normal(jax.random.PRNGKey(0), (48, 12))}


def test_training_lowers_the_loss_on_a_tiny_set():
  frames, ram, episode = _tiny_set()
  init = _init()
  trained, info = atari_ceiling.train_ceiling(
      _encode_fn, init, frames, ram, episode, 'pong', steps=150, batch_size=16,
      learning_rate=1e-2, val_fraction=0.25, eval_every=10, patience=50, seed=0)
  assert info['variables'] == ['player_y', 'ball_x'] and info['num_bit_slots'] == 2
  assert info['final_train_loss'] < 0.5 * info['initial_train_loss']
  assert info['val_loss'] < info['initial_val_loss']  # on held-out episodes
  assert 0 < info['best_step'] <= info['steps'] <= 150
  assert info['n_val'] % 12 == 0 and info['n_fit'] + info['n_val'] == len(ram)  # whole episodes
  assert trained['w'].shape == (48, 12)
  assert not np.allclose(np.asarray(trained['w']), np.asarray(init['w']))  # f~ was trained
  # Deterministic given the seed.
  again, _ = atari_ceiling.train_ceiling(
      _encode_fn, init, frames, ram, episode, 'pong', steps=150, batch_size=16,
      learning_rate=1e-2, val_fraction=0.25, eval_every=10, patience=50, seed=0)
  np.testing.assert_array_equal(np.asarray(again['w']), np.asarray(trained['w']))


def test_zero_steps_return_the_initial_encoder():
  frames, ram, episode = _tiny_set()
  init = _init()
  out, info = atari_ceiling.train_ceiling(
      _encode_fn, init, frames, ram, episode, 'pong', steps=0, batch_size=16,
      learning_rate=1e-2, val_fraction=0.25, eval_every=10, patience=5, seed=0)
  assert out is init and info['steps'] == 0


def test_update_step_is_pure_and_jits():
  frames, ram, _ = _tiny_set(16)
  params = {'encoder': _init(), **atari_ceiling.init_heads(12, 2, 16)}
  batch = atari_ceiling.Batch(jnp.asarray(frames), jnp.asarray(ram[:, [49, 51]].astype(np.int32)),
                              jnp.zeros((16, 16), jnp.float32), jnp.ones((16,), jnp.float32))
  losses = atari_ceiling.example_losses(params, batch, _encode_fn)
  assert losses.shape == (16,)
  # Zero heads: uniform over 256 byte values (CE ln 256) and logits 0 (BCE ln 2).
  np.testing.assert_allclose(np.asarray(losses), np.log(256.0) + np.log(2.0), rtol=1e-5)
  optimizer = optax.adam(1e-2)
  state = atari_ceiling.CeilingState(params, optimizer.init(params))
  step = functools.partial(atari_ceiling.update_step, encode_fn=_encode_fn, optimizer=optimizer)
  eager, loss = step(state, batch)
  jitted, jit_loss = jax.jit(step)(state, batch)
  assert float(loss) == pytest.approx(float(jit_loss), rel=1e-6)
  leaves = jax.tree_util.tree_leaves
  for a, b in zip(leaves(eager.params), leaves(jitted.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(state.params['encoder']['w']),
                                np.asarray(params['encoder']['w']))  # the input is untouched
  losses = atari_ceiling.example_losses(eager.params, batch, _encode_fn)
  assert float(jnp.mean(losses)) < float(loss)
