"""The Atari probe stage: linear RAM probes on the frozen encoders of one (game, fraction).

Outputs under `WorkDir.stage_dir('probe')`:
  <game>/probe_data.npz       the fixed probe training set (frames and RAM sampled once from the
                              game's natural table), shared by every fraction, variant and seed
  <game>/untrained.json       the controls: probes on the untrained encoders (per seed) and the
                              majority-class-per-bit F1 (and, with probe.byte_probes, the
                              majority-value-per-variable byte F1), shared by every fraction
  <game>/f<pct>/probe.json    per variant and seed: RAM-bit probe F1 (validation episodes), the
                              probes' train and held-out F1 and fit steps (and AtariARI byte
                              F1); the controls; the learning curve of encoder snapshots (bit
                              F1, and byte F1 in 'learning_curve_byte')
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.envs import palette
from rmr_dist.evaluation import metrics
from rmr_dist.evaluation import probes
from rmr_dist.learning import natural as natural_learning
from rmr_dist.networks import natural as natural_net
from rmr_dist.networks import processors
from rmr_dist.replay import episode_store
from rmr_dist.replay import iterators
from rmr_dist.replay import splits
from rmr_dist.replay import store_batches
from rmr_dist.replay import table_names
from rmr_dist.stages import atari_natural

LogFn = Callable[[dict[str, float], int], None]


# Draws made for the probe set, per probe frame wanted, before it settles for the distinct
# transitions found: enough to find nearly every transition of a table smaller than the set
# (10 draws per frame miss each of N <= n items with probability below e^-10).
PROBE_DRAWS_PER_FRAME = 10


def make_train_data(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
                    replay_address: str) -> tuple[np.ndarray, np.ndarray]:
  """The game's fixed probe training set: (frames [N,(K,)H,W,3], ram [N,128]) from train episodes
  (sampled from the natural table, or its items in the episode store: `replay.learner_source`).

  The N = `probe.train_transitions` transitions are distinct: sampling is with replacement, and
  a repeated transition would sit in both the probes' fit and held-out parts, so early stopping
  would not see held-out data. Draws stop after `PROBE_DRAWS_PER_FRAME` x N; a table with fewer
  transitions gives (almost surely) all of them.
  """
  path = workdir.probe_data(game)
  if storage.exists(path):
    with np.load(io.BytesIO(storage.read_bytes(path))) as data:
      return data['frames'], data['ram']
  n = config.probe.train_transitions
  source = iterators.make_learner_source(config, workdir.episodes, replay_address,
                                         table_names.NATURAL, game, min(n, 64),
                                         frame_stack=config.natural.frame_stack)
  frames, ram, seen, drawn = [], [], set(), 0
  while len(ram) < n and drawn < PROBE_DRAWS_PER_FRAME * n:
    b = next(source)
    drawn += len(b['ram_t'])
    for frame, r in zip(b['frame_t'], b['ram_t']):
      key = hashlib.blake2b(frame.tobytes() + r.tobytes(), digest_size=16).digest()
      if key not in seen and len(ram) < n:
        seen.add(key)
        frames.append(frame)
        ram.append(r)
  frames, ram = palette.to_rgb(np.stack(frames)), np.stack(ram)
  workdir_lib.atomic_write_npz(path, frames=frames, ram=ram)
  return frames, ram


def make_eval_data(config: config_lib.AtariConfig,
                   workdir: workdir_lib.WorkDir, game: str) -> tuple[np.ndarray, np.ndarray]:
  """Every `stride`-th (frame, RAM) of the validation episodes, in (head, episode, t) order
  (frames [N, H, W, 3], or [N, K, H, W, 3] stacks with natural.frame_stack K > 1)."""
  store = episode_store.EpisodeStore(workdir.episodes)
  entries = store.entries(game, splits.VAL)
  total = sum(e['length'] + 1 for e in entries)
  cap = config.probe.max_eval_frames
  stride = max(1, -(-total // cap)) if cap else 1
  frames, ram, offset = [], [], 0
  for e in entries:
    ep = store.read(game, splits.VAL, e['head'], e['episode'])
    idx = np.arange((-offset) % stride, len(ep.ram), stride)
    k = config.natural.frame_stack
    frames.append(ep.frames[store_batches.stack_steps(idx, 0, k)] if k > 1 else ep.frames[idx])
    ram.append(ep.ram[idx])
    offset += len(ep.ram)
  return np.concatenate(frames), np.concatenate(ram)


def make_encode_fn(config: config_lib.AtariConfig) -> probes.EncodeFn:
  """f~ alone, as the natural stage builds it (`natural_net.make_encode_fn`)."""
  nc = config.natural
  return natural_net.make_encode_fn(nc.maps_per_slot, config.abstract.latent_size,
                                    nc.map_activation, nc.slot_embedding)


def untrained_encoders(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir,
                       game: str) -> dict[int, Any]:
  """{seed: f~ params} of the natural learners' initialisation (zero updates): the control."""
  nc = config.natural
  spec_dict, _ = checkpointing.restore_processor(
      atari_natural.processor_export(config, workdir, game),
      expected_spec={'latent_size': config.abstract.latent_size})
  model = natural_learning.make_model(
      processors.ModelSpec.from_dict(spec_dict), maps_per_slot=nc.maps_per_slot,
      latent_size=config.abstract.latent_size, map_activation=nc.map_activation,
      slot_embedding=nc.slot_embedding)
  return natural_learning.initial_encoder_params(
      model, config.seed, nc.num_seeds, (config.env.frame_height, config.env.frame_width),
      nc.frame_stack)


def score_encoder(config: config_lib.AtariConfig, encode_fn: probes.EncodeFn, params: Any,
                  data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], game: str,
                  seed: int) -> dict[str, Any]:
  """Fits and scores the linear RAM probes of one frozen encoder: THE code path of every
  encoder in Table 1, trained or untrained.

  Args:
    config: program config (`probe` section).
    encode_fn: f~ (`make_encode_fn`).
    params: its parameters (only run forward).
    data: (train frames [N, H, W, 3] or [N, K, H, W, 3] stacks, train RAM [N, 128],
      validation frames, validation RAM).
    game: for the AtariARI byte probes.
    seed: the model's seed (probe minibatch order and held-out split: config.seed + seed).

  Returns:
    ``bit_f1`` and ``slot_accuracy`` on the validation episodes' high-entropy slots (Table 2's
    protocol), ``train_f1`` (the fitted probe frames) and ``holdout_f1`` (the held-out probe
    frames) on the same slots, ``probe_steps``, ``best_step``, ``stopped_early``, ``byte_f1``
    (None unless probe.byte_probes and the game has AtariARI labels).
  """
  pc = config.probe
  train_frames, train_ram, val_frames, val_ram = data
  train_emb = probes.frozen_embeddings(encode_fn, params, train_frames, pc.embed_batch_size)
  val_emb = probes.frozen_embeddings(encode_fn, params, val_frames, pc.embed_batch_size)
  mask = metrics.high_entropy_slots(val_ram)  # [128] bool, the scored slots
  kw = dict(steps=pc.steps, batch_size=pc.batch_size, learning_rate=pc.learning_rate,
            weight_decay=pc.weight_decay, seed=config.seed + seed,
            early_stopping=probes.EarlyStopping(pc.val_fraction, pc.eval_every, pc.patience),
            max_components=pc.max_components)
  bit_params, info = probes.fit_bit_probes(train_emb, train_ram, slots=mask, **kw)
  bit = probes.evaluate_bit_probes(bit_params, val_emb, val_ram)
  on = lambda idx: (probes.bit_f1_on_slots(bit_params, train_emb[idx], train_ram[idx], mask)
                    if len(idx) else None)
  byte = None
  if pc.byte_probes:
    byte = probes.evaluate_byte_probes(
        probes.train_byte_probes(train_emb, train_ram, game, **kw), val_emb, val_ram)
  return {'bit_f1': float(bit['bit_f1']), 'slot_accuracy': float(bit['slot_accuracy']),
          'train_f1': on(info.fit_index), 'holdout_f1': on(info.val_index),
          'probe_steps': info.steps, 'best_step': info.best_step,
          'stopped_early': bool(info.stopped_early),
          'byte_f1': None if byte is None else float(byte['mean_f1']),
          'num_slots': int(bit['num_slots'])}


def run(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
        fraction: float, replay_address: str, *, log_fn: LogFn | None = None,
        say: Callable[[str], None] = print) -> dict[str, Any]:
  """Fits linear RAM probes on every frozen encoder of a trained fraction; returns probe.json.

  The encoders' parameters are read from the natural checkpoint
  (`natural_learning.restore_encoder_params`) and only run forward; the probes alone are
  optimised. The record also holds the controls: the untrained encoders (the same
  initialisations, zero updates; probed once per game and shared by its fractions) and the
  majority-class-per-bit predictor; and, for the largest fraction, where the natural stage
  saved encoder snapshots (natural.curve_steps), the probe F1 of every snapshot (the learning
  curve).
  """
  del say
  return workdir_lib.cached_result(
      workdir.probe_result(game, fraction),
      lambda: _probe(config, workdir, game, fraction, replay_address, log_fn))


def _untrained(config, workdir, game, data, encode_fn):
  path = storage.join(storage.dirname(workdir.probe_data(game)), 'untrained.json')

  def compute():
    start = time.perf_counter()
    per_seed = [score_encoder(config, encode_fn, params, data, game, seed)
                for seed, params in untrained_encoders(config, workdir, game).items()]
    byte_majority = (probes.majority_byte_f1(data[1], data[3], game)
                     if config.probe.byte_probes else None)
    return {'game': game, 'per_seed': per_seed,
            'majority': probes.majority_bit_f1(data[1], data[3]),
            'majority_byte': byte_majority,
            'seconds': round(time.perf_counter() - start, 2)}

  return workdir_lib.cached_result(path, compute)


def _collect(records: list[dict[str, Any]]) -> dict[str, list]:
  """[per-seed record] -> {key: [value per seed]}."""
  return {k: [r[k] for r in records] for k in records[0]} if records else {}


def _probe(config, workdir, game, fraction, replay_address, log_fn):
  natural_dir = workdir.natural_unit(game, fraction)
  if not storage.exists(storage.join(natural_dir, 'trained.json')):
    raise config_lib.ConfigError(
        f'The probe stage needs trained natural models in {natural_dir}: run the natural stage '
        f'first (--stages=...,natural,probe).')
  nc = config.natural
  train_frames, train_ram = make_train_data(config, workdir, game, replay_address)
  val_frames, val_ram = make_eval_data(config, workdir, game)
  data = (train_frames, train_ram, val_frames, val_ram)
  encode_fn = make_encode_fn(config)
  start = time.perf_counter()
  untrained = _untrained(config, workdir, game, data, encode_fn)
  encoders = natural_learning.restore_encoder_params(storage.join(natural_dir, 'checkpoints'),
                                                     nc.variants, nc.num_seeds)
  per_model: dict[str, list] = {}
  for (variant, seed), params in encoders.items():
    rec = score_encoder(config, encode_fn, params, data, game, seed)
    per_model.setdefault(variant, []).append(rec)
    if log_fn is not None:
      log_fn({f'eval/probe/{game}/f{round(100 * fraction):d}/{variant}/seed_{seed}/bit_f1':
              rec['bit_f1']}, nc.num_steps)
  curve, byte_curve = {}, {}
  for step, snapshot in atari_natural.read_snapshots(config, workdir, game, fraction).items():
    recs = {v: [score_encoder(config, encode_fn, snapshot[(v, s)], data, game, s)
                for s in range(nc.num_seeds)] for v in nc.variants}
    curve[str(step)] = {v: [r['bit_f1'] for r in rs] for v, rs in recs.items()}
    if all(r['byte_f1'] is not None for rs in recs.values() for r in rs):
      byte_curve[str(step)] = {v: [r['byte_f1'] for r in rs] for v, rs in recs.items()}
  byte_majority = untrained.get('majority_byte')
  return {'game': game, 'fraction': fraction,
          'variants': {v: _collect(recs) for v, recs in per_model.items()},
          'untrained': _collect(untrained['per_seed']),
          'majority_f1': float(untrained['majority']['bit_f1']),
          'majority_byte_f1': None if byte_majority is None else byte_majority['mean_f1'],
          'learning_curve': curve, 'learning_curve_byte': byte_curve,
          'n_seeds': nc.num_seeds,
          'n_eval_slots': int(metrics.high_entropy_slots(val_ram).sum()),
          'n_train_frames': int(len(train_ram)), 'n_eval_frames': int(len(val_ram)),
          'seconds': round(time.perf_counter() - start, 2)}
