"""An Atari natural-model learning test that can fail: on real Pong frames (ALE, 84x64, no
sticky actions, seeded no-op starts), a few dozen contrastive updates of f~ lift the linear
RAM-probe bit F1 on held-out episodes above the same encoder's untrained initialisation, scored
by the same probe code (held-out early stopping). The updates use the InfoNCE objective
(``natural.loss='infonce'``); with C-SWM's hinge the encoder does not beat its initialisation at
this budget (README, "The natural pipeline")."""

import functools

import jax
import numpy as np

from rmr_dist.acting import policies
from rmr_dist.envs import atari
from rmr_dist.evaluation import metrics
from rmr_dist.evaluation import probes
from rmr_dist.learning import natural as natural_learning
from rmr_dist.networks import natural as natural_net
from rmr_dist.networks import processors

SHAPE, UPDATES, BATCH = (84, 64), 40, 16


def _episodes(env, seeds, steps):
  """(frames [T+1, H, W, 3], ram [T+1, 128], actions [T]) per seed; persistent random actions."""
  return [policies.persistent_random_episode(env, seed, steps) for seed in seeds]


def _probe_f1(encode_fn, params, train, val):
  train_emb = probes.frozen_embeddings(encode_fn, params, train[0], 100)
  val_emb = probes.frozen_embeddings(encode_fn, params, val[0], 100)
  mask = metrics.high_entropy_slots(val[1])
  fitted, _ = probes.fit_bit_probes(
      train_emb, train[1], steps=1000, batch_size=128, learning_rate=1e-3, weight_decay=0.0,
      seed=0, early_stopping=probes.EarlyStopping(0.2, 25, 4), max_components=512,
      slots=mask)
  return probes.evaluate_bit_probes(fitted, val_emb, val[1])['bit_f1']


def test_contrastive_updates_beat_the_untrained_encoder_on_pong():
  env = atari.AtariEnv('pong', frame_shape=SHAPE, max_episode_steps=1000, noop_max=30)
  train_eps, val_eps = _episodes(env, range(4), 200), _episodes(env, range(10, 12), 200)
  frames_t = np.concatenate([f[:-1] for f, _, _ in train_eps])  # [N, H, W, 3]
  frames_tp1 = np.concatenate([f[1:] for f, _, _ in train_eps])
  actions = np.eye(atari.NUM_ACTIONS, dtype=np.uint8)[np.concatenate([a for _, _, a in train_eps])]
  train = (np.concatenate([f for f, _, _ in train_eps]),
           np.concatenate([r for _, r, _ in train_eps]))
  val = (np.concatenate([f for f, _, _ in val_eps]), np.concatenate([r for _, r, _ in val_eps]))

  spec = processors.ModelSpec('deepsets', latent_size=32, hidden_size=16)
  model = natural_learning.make_model(spec, maps_per_slot=1, latent_size=32, slot_embedding=True)
  variants = ('cswm',)
  optimizer = natural_learning.make_optimizer(1e-3, variants, 1)
  fresh = natural_learning.init_per_seed(model, jax.random.PRNGKey(1), 1, SHAPE)[0]
  state = natural_learning.init_state(model, optimizer, jax.random.PRNGKey(0), variants=variants,
                                      num_seeds=1, processor_params=fresh['processor'],
                                      frame_shape=SHAPE)
  untrained = natural_learning.initial_encoder_params(model, 0, 1, SHAPE)[0]
  update = jax.jit(functools.partial(natural_learning.update, model=model, optimizer=optimizer,
                                     variants=variants, loss='infonce'))
  rng = np.random.default_rng(0)
  for _ in range(UPDATES):
    i = rng.choice(len(frames_t), BATCH, replace=False)
    state, metrics_ = update(state, {'frame_t': frames_t[i], 'action': actions[i],
                                     'frame_tp1': frames_tp1[i]})
  assert np.isfinite(np.asarray(metrics_['loss'])).all()
  trained = jax.tree_util.tree_map(lambda x: np.asarray(x[0]),
                                   jax.device_get(state.params['encoder']))
  encode_fn = natural_net.make_encode_fn(1, 32, slot_embedding=True)
  before = _probe_f1(encode_fn, untrained, train, val)
  after = _probe_f1(encode_fn, trained, train, val)
  majority = probes.majority_bit_f1(train[1], val[1])['bit_f1']
  assert before > majority  # a random CNN already reads some of the RAM
  assert after > before + 0.01, (majority, before, after)
