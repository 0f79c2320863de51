"""Atari natural-model learning tests on real Pong frames (ALE, 84x64 padded to 84x68 by the
'small' trunk, no sticky actions, seeded
no-op starts; persistent random actions), 120 InfoNCE updates (``natural.loss='infonce'``) of
batch 16, scored on held-out episodes against the same model's untrained initialisation.

* The model learns its objective: on held-out transitions its prediction
  ``g~(P(f~(x_t), a_t))`` picks out the true ``f~(x_t+1)`` among 16 candidates far more often than
  the untrained model's does (measured with the 'small' trunk: 0.058 untrained, 0.217 trained;
  chance 0.0625; with the old 3x2-map trunk 0.070 and 0.330). This test can fail (e.g. if no
  gradient reaches f~ or P, or at 40 updates of the old trunk: 0.068).
* What it does not do at this budget: beat the untrained encoder on linear RAM probes of
  adequate capacity. Whitened onto 512 components of 640 probe frames, the trained encoder of 40
  updates looked 0.045 better (0.841 vs 0.796), but that was the probe overfitting the untrained
  encoder's embedding: with 128 components the untrained one scores 0.848 (README, "Probe
  capacity"). That test is a strict xfail: it fails the suite the day it passes.
"""

import functools

import jax
import numpy as np
import pytest

from rmr_dist import losses
from rmr_dist.acting import atari_policies
from rmr_dist.envs import atari
from rmr_dist.evaluation import atari_metrics
from rmr_dist.evaluation import atari_probes
from rmr_dist.learning import lockstep
from rmr_dist.learning import atari_natural as natural_learning
from rmr_dist.networks import atari_natural as natural_net
from rmr_dist.networks import processors

SHAPE, UPDATES, BATCH, CANDIDATES = (84, 64), 120, 16, 16


def _episodes(env, seeds, steps):
  """(frames [T+1, H, W, 3], ram [T+1, 128], actions [T]) per seed; persistent random actions."""
  return [atari_policies.persistent_random_episode(env, seed, steps) for seed in seeds]


# One xdist worker runs both tests: they share one training run (`trained`).
pytestmark = pytest.mark.xdist_group('atari_natural_learns')


@pytest.fixture(scope='module')
def trained():
  """Untrained and trained model params, the model, and the train/held-out episodes."""
  env = atari.AtariEnv('pong', frame_shape=SHAPE, max_episode_steps=1000, noop_max=30)
  train_eps, val_eps = _episodes(env, range(4), 200), _episodes(env, range(10, 12), 200)
  frames_t = np.concatenate([f[:-1] for f, _, _ in train_eps])  # [N, H, W, 3]
  frames_tp1 = np.concatenate([f[1:] for f, _, _ in train_eps])
  actions = np.eye(atari.NUM_ACTIONS, dtype=np.uint8)[np.concatenate([a for _, _, a in train_eps])]
  spec = processors.ModelSpec('deepsets', latent_size=32, hidden_size=16)
  model = natural_learning.make_model(spec, maps_per_slot=1, latent_size=32, slot_embedding=True)
  variants = ('cswm',)
  optimizer = lockstep.make_optimizer(1e-3, variants, 1)
  fresh = natural_learning.init_per_seed(model, jax.random.PRNGKey(1), 1, SHAPE)[0]
  state = natural_learning.init_state(model, optimizer, jax.random.PRNGKey(0), variants=variants,
                                      num_seeds=1, processor_params=fresh['processor'],
                                      frame_shape=SHAPE)
  first = lambda tree: jax.tree_util.tree_map(lambda x: np.asarray(x[0]), jax.device_get(tree))
  before = first(state.params)
  update = jax.jit(functools.partial(natural_learning.update, model=model, optimizer=optimizer,
                                     variants=variants, loss='infonce'))
  rng = np.random.default_rng(0)
  for _ in range(UPDATES):
    i = rng.choice(len(frames_t), BATCH, replace=False)
    state, metrics_ = update(state, {'frame_t': frames_t[i], 'action': actions[i],
                                     'frame_tp1': frames_tp1[i]})
  assert np.isfinite(np.asarray(metrics_['loss'])).all()
  return {'model': model, 'before': before, 'after': first(state.params),
          'train_eps': train_eps, 'val_eps': val_eps}


def _retrieval_accuracy(model, params, episodes):
  """Share of held-out transitions whose prediction is nearest (C-SWM's energy) to its own next
  frame among CANDIDATES next frames (chunks of the held-out transitions, in a fixed shuffle)."""
  frames_t = np.concatenate([f[:-1] for f, _, _ in episodes])
  frames_tp1 = np.concatenate([f[1:] for f, _, _ in episodes])
  actions = np.eye(atari.NUM_ACTIONS, dtype=np.uint8)[np.concatenate([a for _, _, a in episodes])]
  order = np.random.default_rng(3).permutation(len(frames_t))
  hits, total = 0, 0
  for start in range(0, len(order) - CANDIDATES + 1, CANDIDATES):
    i = order[start:start + CANDIDATES]
    z_pred, _ = model.apply({'params': params}, frames_t[i], actions[i])  # [K, S, H]
    z_next = model.apply({'params': params}, frames_tp1[i], method='encode')  # [K, S, H]
    energy = np.asarray(losses.pairwise_energy(z_pred, z_next))  # [K, K]
    hits += int(np.sum(np.argmin(energy, axis=1) == np.arange(len(i))))
    total += len(i)
  return hits / total


def test_contrastive_updates_learn_to_pick_the_next_frame_on_held_out_episodes(trained):
  model, val_eps = trained['model'], trained['val_eps']
  before = _retrieval_accuracy(model, trained['before'], val_eps)
  after = _retrieval_accuracy(model, trained['after'], val_eps)
  print(f'held-out next-frame retrieval: untrained {before:.3f}, trained {after:.3f}')
  assert after > before + 0.1, (before, after)  # Chance is 1/16.


def _probe_f1(encode_fn, params, train, val, max_components):
  train_emb = atari_probes.frozen_embeddings(encode_fn, params, train[0], 100)
  val_emb = atari_probes.frozen_embeddings(encode_fn, params, val[0], 100)
  mask = atari_metrics.high_entropy_slots(val[1])
  fitted, _ = atari_probes.fit_bit_probes(
      train_emb, train[1], steps=1000, batch_size=128, learning_rate=1e-3, weight_decay=0.0,
      seed=0, early_stopping=atari_probes.EarlyStopping(0.2, 25, 4), max_components=max_components,
      slots=mask)
  return atari_probes.evaluate_bit_probes(fitted, val_emb, val[1])['bit_f1']


@pytest.mark.xfail(strict=True, reason=(
    'At 120 updates the trained encoder does not beat its initialisation on linear RAM probes '
    'of adequate capacity: with 128 components, 0.851 untrained vs 0.833 trained (majority '
    '0.585; the old 3x2-map trunk: 0.848 vs 0.842).'))
def test_probe_f1_beats_the_untrained_encoder_on_pong(trained):
  join = lambda eps: (np.concatenate([f for f, _, _ in eps]), np.concatenate([r for _, r, _ in eps]))
  train, val = join(trained['train_eps']), join(trained['val_eps'])
  encode_fn = natural_net.make_encode_fn(1, 32, slot_embedding=True)
  before = _probe_f1(encode_fn, trained['before']['encoder'], train, val, 128)
  after = _probe_f1(encode_fn, trained['after']['encoder'], train, val, 128)
  majority = atari_probes.majority_bit_f1(train[1], val[1])['bit_f1']
  assert before > majority  # A random CNN already reads some of the RAM.
  print(f'probe F1: majority {majority:.3f}, untrained {before:.3f}, trained {after:.3f}')
  assert after > before + 0.01, (majority, before, after)
