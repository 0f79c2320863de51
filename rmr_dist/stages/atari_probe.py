"""The Atari probe stage: linear RAM probes on the frozen encoders of one (game, fraction).

Outputs under `WorkDir.stage_dir('probe')`:
  <game>/probe_data.npz       the fixed probe training set (frames and RAM sampled once from the
                              game's natural table), shared by every fraction, variant and seed
  <game>/f<pct>/probe.json    per variant and seed: RAM-bit probe F1 (and AtariARI byte F1)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import probes
from rmr_dist.learning import natural as natural_learning
from rmr_dist.networks import natural as natural_net
from rmr_dist.replay import episode_store
from rmr_dist.replay import iterators
from rmr_dist.replay import splits
from rmr_dist.replay import table_names

LogFn = Callable[[dict[str, float], int], None]


def make_train_data(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
                    replay_address: str) -> tuple[np.ndarray, np.ndarray]:
  """The game's fixed probe training set: (frames [N,H,W,3], ram [N,128]) from train episodes
  (sampled from the natural table, or its items in the episode store: `replay.learner_source`)."""
  path = workdir.probe_data(game)
  if os.path.exists(path):
    with np.load(path) as data:
      return data['frames'], data['ram']
  n = config.probe.train_transitions
  source = iterators.make_learner_source(config, workdir.episodes, replay_address,
                                         table_names.NATURAL, game, min(n, 64))
  frames, ram, have = [], [], 0
  while have < n:
    b = next(source)
    frames.append(b['frame_t'])
    ram.append(b['ram_t'])
    have += len(b['ram_t'])
  frames, ram = np.concatenate(frames)[:n], np.concatenate(ram)[:n]
  workdir_lib.atomic_write_npz(path, frames=frames, ram=ram)
  return frames, ram


def make_eval_data(config: config_lib.AtariConfig,
                   workdir: workdir_lib.WorkDir, game: str) -> tuple[np.ndarray, np.ndarray]:
  """Every `stride`-th (frame, RAM) of the validation episodes, in (head, episode, t) order."""
  store = episode_store.EpisodeStore(workdir.episodes)
  entries = store.entries(game, splits.VAL)
  total = sum(e['length'] + 1 for e in entries)
  cap = config.probe.max_eval_frames
  stride = max(1, -(-total // cap)) if cap else 1
  frames, ram, offset = [], [], 0
  for e in entries:
    ep = store.read(game, splits.VAL, e['head'], e['episode'])
    idx = np.arange((-offset) % stride, len(ep.ram), stride)
    frames.append(ep.frames[idx])
    ram.append(ep.ram[idx])
    offset += len(ep.ram)
  return np.concatenate(frames), np.concatenate(ram)


def run(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
        fraction: float, replay_address: str, *, log_fn: LogFn | None = None,
        say: Callable[[str], None] = print) -> dict[str, Any]:
  """Fits linear RAM probes on every frozen encoder of a trained fraction; returns probe.json.

  The encoders' parameters are read from the natural checkpoint
  (`natural_learning.restore_encoder_params`) and only run forward; the probes alone are
  optimised.
  """
  del say
  return workdir_lib.cached_result(
      workdir.probe_result(game, fraction),
      lambda: _probe(config, workdir, game, fraction, replay_address, log_fn))


def _probe(config, workdir, game, fraction, replay_address, log_fn):
  natural_dir = workdir.natural_unit(game, fraction)
  if not os.path.exists(os.path.join(natural_dir, 'trained.json')):
    raise config_lib.ConfigError(
        f'The probe stage needs trained natural models in {natural_dir}: run the natural stage '
        f'first (--stages=...,natural,probe).')
  pc, nc = config.probe, config.natural
  train_frames, train_ram = make_train_data(config, workdir, game, replay_address)
  val_frames, val_ram = make_eval_data(config, workdir, game)
  encoders = natural_learning.restore_encoder_params(os.path.join(natural_dir, 'checkpoints'),
                                                     nc.variants, nc.num_seeds)
  encode = natural_net.make_encode_fn(nc.maps_per_slot, config.abstract.latent_size)
  start = time.perf_counter()
  per_model: dict[str, dict[str, list]] = {}
  for (variant, seed), params in encoders.items():
    train_emb = probes.frozen_embeddings(encode, params, train_frames, pc.embed_batch_size)
    val_emb = probes.frozen_embeddings(encode, params, val_frames, pc.embed_batch_size)
    kw = dict(steps=pc.steps, batch_size=pc.batch_size, learning_rate=pc.learning_rate,
              weight_decay=pc.weight_decay, seed=config.seed + seed)
    bit = probes.evaluate_bit_probes(
        probes.train_bit_probes(train_emb, train_ram, **kw), val_emb, val_ram)
    byte = probes.evaluate_byte_probes(
        probes.train_byte_probes(train_emb, train_ram, game, **kw), val_emb, val_ram)
    entry = per_model.setdefault(variant, {'bit_f1': [], 'slot_accuracy': [], 'byte_f1': []})
    entry['bit_f1'].append(float(bit['bit_f1']))
    entry['slot_accuracy'].append(float(bit['slot_accuracy']))
    entry['byte_f1'].append(None if byte is None else float(byte['mean_f1']))
    num_slots = int(bit['num_slots'])
    if log_fn is not None:
      log_fn({f'eval/probe/{game}/f{round(100 * fraction):d}/{variant}/seed_{seed}/bit_f1':
              float(bit['bit_f1'])}, nc.num_steps)
  return {'game': game, 'fraction': fraction, 'variants': per_model,
          'n_seeds': nc.num_seeds, 'n_eval_slots': num_slots,
          'n_train_frames': int(len(train_ram)), 'n_eval_frames': int(len(val_ram)),
          'seconds': round(time.perf_counter() - start, 2)}
