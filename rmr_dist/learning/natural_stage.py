"""The natural and probe stages of one (game, data fraction).

Outputs under `<workdir>/natural/<game>/f<percent>/`:
  checkpoints/   Orbax state of all variants x seeds (resumable)
  trained.json   steps, wall time, final losses, batch fingerprints (written when training ends)
  probe.json     per variant and seed: RAM-bit probe F1 (and AtariARI byte-probe F1)
And per game, `<workdir>/natural/<game>/probe_data.npz`: the fixed probe training set (frames and
RAM sampled once from the game's natural table), shared by every fraction, variant and seed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from rmr_dist import config as config_lib
from rmr_dist.evaluation import probes
from rmr_dist.learning import natural as natural_learning
from rmr_dist.learning import stages as abstract_stages
from rmr_dist.networks import natural as natural_net
from rmr_dist.replay import episode_store
from rmr_dist.replay import iterators
from rmr_dist.replay import splits
from rmr_dist.replay import tables


def fraction_dir(workdir: str, game: str, fraction: float) -> str:
  return os.path.join(workdir, 'natural', game, f'f{round(100 * fraction):d}')


def processor_export_path(config: config_lib.AtariConfig, workdir: str, game: str) -> str:
  return os.path.join(abstract_stages.unit_dir(workdir, game, config.natural.processor_model),
                      'processor')


def _make_learner(config: config_lib.AtariConfig, game: str, fraction: float, workdir: str,
                  iterator, log_fn=None) -> natural_learning.NaturalLearner:
  nc = config.natural
  return natural_learning.NaturalLearner(
      processor_export=processor_export_path(config, workdir, game), variants=nc.variants,
      num_seeds=nc.num_seeds, maps_per_slot=nc.maps_per_slot, learning_rate=nc.learning_rate,
      seed=config.seed, iterator=iterator,
      checkpoint_dir=os.path.join(fraction_dir(workdir, game, fraction), 'checkpoints'),
      save_every=nc.save_every, keep=nc.keep_checkpoints, log_fn=log_fn,
      log_every=nc.log_every, frame_shape=(config.env.frame_height, config.env.frame_width),
      latent_size=config.abstract.latent_size, hinge=nc.hinge, sigma=nc.sigma)


def run_natural_unit(config: config_lib.AtariConfig, game: str, fraction: float,
                     replay_address: str, workdir: str,
                     log_fn: Callable[[dict[str, float], int], None] | None = None,
                     wait_log: Callable[[str], None] = print) -> dict[str, Any] | None:
  """Trains every variant x seed in lockstep on the `fraction` table of `game`.

  Waits (with a line to `wait_log`, up to `natural.export_timeout_s`) for the processor export
  first. Returns the `trained.json` record (None on processes other than 0 of a multi-host
  learner group, which share the training but leave the record to process 0).
  """
  out_dir = fraction_dir(workdir, game, fraction)
  done_path = os.path.join(out_dir, 'trained.json')
  if os.path.exists(done_path):
    with open(done_path) as f:
      return json.load(f)
  os.makedirs(out_dir, exist_ok=True)
  nc = config.natural
  natural_learning.NaturalLearner.wait_for_export(
      processor_export_path(config, workdir, game), nc.export_timeout_s,
      poll_s=min(5.0, nc.export_timeout_s), log=wait_log)
  source = iterators.make_table_iterator(  # This process's share of every batch.
      replay_address, tables.table_name(tables.NATURAL, game, fraction),
      nc.batch_size // jax.process_count())
  prefetcher = iterators.Prefetcher(
      ({k: v for k, v in batch.items() if k != 'ram_t'} for batch in source), size=nc.prefetch)
  start = time.perf_counter()
  try:
    learner = _make_learner(config, game, fraction, workdir, prefetcher, log_fn)
    metrics = learner.run(nc.num_steps,
                          progress_label=f'natural {game} f{round(100 * fraction):d}')
  finally:
    prefetcher.close()
  learner.close()
  if jax.process_index() != 0:
    return None
  fingerprints = [int(x) for x in np.asarray(learner.fingerprints)]
  record = {
      'game': game, 'fraction': fraction, 'steps': nc.num_steps,
      'seconds': round(time.perf_counter() - start, 2),
      'final_loss': natural_learning.flatten_metrics(
          {'loss': metrics['loss']}, nc.variants, nc.num_seeds) if metrics else {},
      'fingerprints': fingerprints,
      'identical_batches': len(set(fingerprints)) == 1,
      'resumed_from': None if learner.restored_step is None else {
          'step': learner.restored_step, 'params_sha256': learner.restored_params_digest},
  }
  episode_store.atomic_write_json(done_path, record)
  return record


def _probe_train_data(config: config_lib.AtariConfig, game: str, replay_address: str,
                      workdir: str) -> tuple[np.ndarray, np.ndarray]:
  """The game's fixed probe training set: (frames [N,H,W,3], ram [N,128]) from train episodes."""
  path = os.path.join(workdir, 'natural', game, 'probe_data.npz')
  if os.path.exists(path):
    with np.load(path) as data:
      return data['frames'], data['ram']
  n = config.probe.train_transitions
  batch = min(n, 64)
  source = iterators.make_table_iterator(
      replay_address, tables.table_name(tables.NATURAL, game), batch)
  frames, ram, have = [], [], 0
  while have < n:
    b = next(source)
    frames.append(b['frame_t'])
    ram.append(b['ram_t'])
    have += len(b['ram_t'])
  frames, ram = np.concatenate(frames)[:n], np.concatenate(ram)[:n]
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.tmp-{os.getpid()}.npz'
  np.savez_compressed(tmp, frames=frames, ram=ram)
  os.replace(tmp, path)
  return frames, ram


def _probe_eval_data(config: config_lib.AtariConfig, game: str,
                     workdir: str) -> tuple[np.ndarray, np.ndarray]:
  """Every `stride`-th (frame, RAM) of the validation episodes, in (head, episode, t) order."""
  store = episode_store.EpisodeStore(os.path.join(workdir, 'episodes'))
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


def run_probe_unit(config: config_lib.AtariConfig, game: str, fraction: float,
                   replay_address: str, workdir: str) -> dict[str, Any]:
  """Fits linear RAM probes on every frozen encoder of a trained fraction; returns probe.json.

  The encoders are restored from the natural checkpoint and only run forward
  (`probes.frozen_embeddings`); the probes alone are optimised.
  """
  out_dir = fraction_dir(workdir, game, fraction)
  result_path = os.path.join(out_dir, 'probe.json')
  if os.path.exists(result_path):
    with open(result_path) as f:
      return json.load(f)
  if not os.path.exists(os.path.join(out_dir, 'trained.json')):
    raise config_lib.ConfigError(
        f'The probe stage needs trained natural models in {out_dir}: run the natural stage '
        f'first (--stages=...,natural,probe).')
  pc, nc = config.probe, config.natural
  train_frames, train_ram = _probe_train_data(config, game, replay_address, workdir)
  val_frames, val_ram = _probe_eval_data(config, game, workdir)
  learner = _make_learner(config, game, fraction, workdir, iter(()))
  encode = natural_net.make_encode_fn(nc.maps_per_slot, config.abstract.latent_size)
  start = time.perf_counter()
  per_model: dict[str, dict[str, list]] = {}
  for variant in nc.variants:
    for seed in range(nc.num_seeds):
      params = learner.encoder_params(variant, seed)
      train_emb = probes.frozen_embeddings(encode, params, train_frames, pc.embed_batch_size)
      val_emb = probes.frozen_embeddings(encode, params, val_frames, pc.embed_batch_size)
      kw = dict(steps=pc.steps, batch_size=pc.batch_size, learning_rate=pc.learning_rate,
                weight_decay=pc.weight_decay, seed=config.seed + seed)
      bit = probes.evaluate_bit_probes(
          probes.train_bit_probes(train_emb, train_ram, **kw), val_emb, val_ram)
      byte = probes.evaluate_byte_probes(
          probes.train_byte_probes(train_emb, train_ram, game, **kw), val_emb, val_ram)
      entry = per_model.setdefault(variant, {'bit_f1': [], 'slot_accuracy': [],
                                             'byte_f1': []})
      entry['bit_f1'].append(float(bit['bit_f1']))
      entry['slot_accuracy'].append(float(bit['slot_accuracy']))
      entry['byte_f1'].append(None if byte is None else float(byte['mean_f1']))
      num_slots = int(bit['num_slots'])
  record = {'game': game, 'fraction': fraction, 'variants': per_model,
            'n_seeds': nc.num_seeds, 'n_eval_slots': num_slots,
            'n_train_frames': int(len(train_ram)), 'n_eval_frames': int(len(val_ram)),
            'seconds': round(time.perf_counter() - start, 2)}
  episode_store.atomic_write_json(result_path, record)
  return record
