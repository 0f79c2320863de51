"""Tests for rmr_dist.checkpointing: learner-state checkpoints and the processor-only export."""

from __future__ import annotations

import os

import jax
import numpy as np
import optax
import pytest

from rmr_dist import checkpointing
from rmr_dist.learning import atari_abstract as learning
from rmr_dist.networks import processors

SPEC16 = processors.ModelSpec('mpnn', latent_size=16, hidden_size=16, num_message_steps=2)


def fresh_state(spec: processors.ModelSpec, seed: int = 0) -> learning.TrainState:
  model = learning.make_model(spec)
  return jax.device_get(learning.init_state(model, optax.adam(1e-3), jax.random.PRNGKey(seed)))


def trained_state(spec: processors.ModelSpec) -> learning.TrainState:
  """A state with non-trivial Adam moments, count, step and key (two real updates)."""
  model, opt = learning.make_model(spec), optax.adam(1e-3)
  state = learning.init_state(model, opt, jax.random.PRNGKey(1))
  rng = np.random.default_rng(0)
  for _ in range(2):
    batch = {'ram_t': rng.integers(0, 256, (4, 128), dtype=np.uint8),
             'action': np.eye(18, dtype=np.uint8)[rng.integers(0, 18, 4)],
             'ram_tp1': rng.integers(0, 256, (4, 128), dtype=np.uint8)}
    state, _ = learning.update(state, batch, model=model, optimizer=opt)
  return jax.device_get(state)


def assert_trees_equal(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def test_learner_state_round_trip_is_exact(tmp_path):
  state = trained_state(SPEC16)
  manager = checkpointing.make_checkpoint_manager(str(tmp_path / 'ckpt'), max_to_keep=2)
  assert checkpointing.restore_learner_state(manager, state) is None  # nothing saved yet
  for step in (1, 2, 3):
    checkpointing.save_learner_state(manager, step, state._replace(step=np.int32(step)))
  manager.wait_until_finished()
  assert sorted(manager.all_steps()) == [2, 3]  # max_to_keep
  assert sorted(os.listdir(tmp_path / 'ckpt')) == ['2', '3']  # no temporary leftovers

  restored, step = checkpointing.restore_learner_state(manager, fresh_state(SPEC16))
  assert step == 3 and isinstance(restored, learning.TrainState)
  assert isinstance(restored.opt_state[0], optax.ScaleByAdamState)
  assert_trees_equal(restored, state._replace(step=np.int32(3)))
  assert restored.rng.dtype == np.uint32 and int(restored.opt_state[0].count) == 2


def test_learner_state_of_another_model_is_refused(tmp_path):
  manager = checkpointing.make_checkpoint_manager(str(tmp_path / 'ckpt'), max_to_keep=1)
  checkpointing.save_learner_state(manager, 5, fresh_state(SPEC16))
  manager.wait_until_finished()
  other = fresh_state(processors.ModelSpec('mpnn', latent_size=32, hidden_size=16,
                                           num_message_steps=2))
  with pytest.raises(checkpointing.CheckpointError) as err:
    checkpointing.restore_learner_state(manager, other)
  assert str(tmp_path / 'ckpt' / '5') in str(err.value)
  assert 'slot_embedding' in str(err.value)


def test_export_carries_the_abstract_encoder_bit_identical(tmp_path):
  """The abstract learner's export holds f (slot embedding + projection) beside P; an export
  of P alone has none."""
  params = jax.device_get(trained_state(SPEC16).params)
  path = checkpointing.export_processor(str(tmp_path / 'proc'), params['processor'],
                                        SPEC16.to_dict(), encoder_params=params['encoder'])
  encoder = checkpointing.restore_abstract_encoder(path)
  assert_trees_equal(encoder, params['encoder'])
  assert encoder['slot_embedding'].shape == (128, SPEC16.latent_size)
  assert_trees_equal(checkpointing.restore_processor(path)[1], params['processor'])
  bare = checkpointing.export_processor(str(tmp_path / 'bare'), params['processor'],
                                        SPEC16.to_dict())
  assert checkpointing.restore_abstract_encoder(bare) is None
  with pytest.raises(checkpointing.CheckpointError, match='not a processor export'):
    checkpointing.restore_abstract_encoder(str(tmp_path))


def test_processor_export_round_trip_is_bit_identical(tmp_path):
  params = trained_state(SPEC16).params['processor']
  path = checkpointing.export_processor(str(tmp_path / 'proc'), params, SPEC16.to_dict())
  spec, restored = checkpointing.restore_processor(path, expected_spec=SPEC16.to_dict())
  assert spec == SPEC16.to_dict()
  assert_trees_equal(restored, params)
  # The restored subtree plugs straight into a freshly built model of the stored spec.
  model_params = fresh_state(processors.ModelSpec.from_dict(spec), seed=3).params
  assert (jax.tree_util.tree_structure(model_params['processor']) ==
          jax.tree_util.tree_structure(restored))


def test_processor_export_overwrite(tmp_path):
  path = str(tmp_path / 'proc')
  first = fresh_state(SPEC16, seed=0).params['processor']
  second = fresh_state(SPEC16, seed=1).params['processor']
  checkpointing.export_processor(path, first, SPEC16.to_dict())
  with pytest.raises(checkpointing.CheckpointError) as err:
    checkpointing.export_processor(path, second, SPEC16.to_dict())
  assert str(err.value) == f'A processor export exists at {path!r}.'
  assert_trees_equal(checkpointing.restore_processor(path)[1], first)  # left untouched
  checkpointing.export_processor(path, second, SPEC16.to_dict(), overwrite=True)
  assert_trees_equal(checkpointing.restore_processor(path)[1], second)
  assert sorted(os.listdir(tmp_path)) == ['proc']


def test_processor_spec_mismatch_names_path_and_key(tmp_path):
  path = checkpointing.export_processor(str(tmp_path / 'proc16'),
                                        fresh_state(SPEC16).params['processor'],
                                        SPEC16.to_dict())
  expected = dict(SPEC16.to_dict(), latent_size=32)
  with pytest.raises(checkpointing.CheckpointError) as err:
    checkpointing.restore_processor(path, expected_spec=expected)
  message = str(err.value)
  assert path in message and 'latent_size: stored 16, expected 32' in message


def test_processor_shape_mismatch_names_path_and_shapes(tmp_path):
  # Params of a latent-16 processor stored under a spec that claims latent 32.
  params = fresh_state(SPEC16).params['processor']
  spec32 = dict(SPEC16.to_dict(), latent_size=32)
  path = checkpointing.export_processor(str(tmp_path / 'liar'), params, spec32)
  with pytest.raises(checkpointing.CheckpointError) as err:
    checkpointing.restore_processor(path)
  message = str(err.value)
  assert path in message
  # The update's output layer maps to latent_size: (16, 16) stored, (16, 32) implied.
  assert "['step_0']['update_1']['kernel']: stored (16, 16), expected (16, 32)" in message


def test_missing_processor_export_names_path(tmp_path):
  path = str(tmp_path / 'nowhere')
  with pytest.raises(checkpointing.CheckpointError, match='nowhere'):
    checkpointing.restore_processor(path)


def test_incomplete_processor_export_names_path(tmp_path):
  # Its directories are there, Orbax's files are not (a copy interrupted midway).
  path = str(tmp_path / 'partial')
  for item in ('params', 'spec'):
    os.makedirs(os.path.join(path, item))
  with pytest.raises(checkpointing.CheckpointError) as err:
    checkpointing.restore_processor(path)
  assert str(err.value).startswith(f'The processor export at {path!r} cannot be read '
                                   '(incomplete or damaged): ')


def test_policy_checkpoint_is_never_overwritten_and_an_incomplete_one_names_its_path(tmp_path):
  path = str(tmp_path / 'policy')
  params = {'w': np.zeros((2, 3), np.float32)}
  checkpointing.save_policy(path, params, (3,))
  with pytest.raises(checkpointing.CheckpointError) as err:
    checkpointing.save_policy(path, params, (3,))
  assert str(err.value) == f'A policy checkpoint exists at {path!r}.'
  partial = str(tmp_path / 'partial')
  os.makedirs(os.path.join(partial, 'meta'))
  with pytest.raises(checkpointing.CheckpointError) as err:
    checkpointing.load_policy(partial)
  assert str(err.value).startswith(f'The policy checkpoint at {partial!r} cannot be read '
                                   '(incomplete or damaged): ')
