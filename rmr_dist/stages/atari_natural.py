"""The Atari natural stage: RMR and C-SWM x seeds in lockstep for one (game, data fraction).

Outputs under `WorkDir.natural_unit(game, fraction)`:
  checkpoints/   Orbax state of all variants x seeds (resumable)
  snapshots/step_<k>.npz  f~ of every variant x seed after k updates, for each k of
                 natural.curve_steps below num_steps (the learning curve's points; the
                 largest data fraction only)
  trained.json   steps, wall time, final losses, batch fingerprints (written when training ends)
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax
import jax
import numpy as np

from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.learning import lockstep
from rmr_dist.learning import atari_natural as natural_learning
from rmr_dist.replay import atari_iterators
from rmr_dist.replay import atari_table_names

LogFn = Callable[[dict[str, float], int], None]


def processor_export(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir,
                     game: str) -> str:
  """The processor export RMR freezes: that of the abstract `natural.processor_model`."""
  return workdir.processor_export(game, config.natural.processor_model)


def make_iterator(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
                  fraction: float, replay_address: str) -> atari_iterators.Prefetcher:
  """This process's share of every batch of the fraction's natural table (without RAM), from
  Reverb or the episode store (`replay.learner_source`)."""
  source = atari_iterators.make_learner_source(
      config, workdir.episodes, replay_address, atari_table_names.NATURAL, game,
      config.natural.batch_size // jax.process_count(), fraction=fraction,
      process_index=jax.process_index(), one_episode=config.natural.negatives == 'episode',
      window=config.natural.episode_window, frame_stack=config.natural.frame_stack)
  return atari_iterators.Prefetcher(
      ({k: v for k, v in batch.items() if k != 'ram_t'} for batch in source),
      size=config.natural.prefetch)


def make_learner(config: config_lib.AtariConfig, export: str, iterator: Iterator[Any],
                 checkpoint_dir: str | None,
                 log_fn: LogFn | None = None) -> natural_learning.NaturalLearner:
  """The lockstep learner of every variant x seed, resumed from `checkpoint_dir` if present."""
  nc = config.natural
  return natural_learning.NaturalLearner(
      processor_export=export, variants=nc.variants, num_seeds=nc.num_seeds,
      maps_per_slot=nc.maps_per_slot, learning_rate=nc.learning_rate, seed=config.seed,
      iterator=iterator, checkpoint_dir=checkpoint_dir, save_every=nc.save_every,
      keep=nc.keep_checkpoints, log_fn=log_fn, log_every=nc.log_every,
      frame_shape=(config.env.frame_height, config.env.frame_width),
      latent_size=config.abstract.latent_size, hinge=nc.hinge, sigma=nc.sigma,
      loss=nc.loss, map_activation=nc.map_activation, slot_embedding=nc.slot_embedding,
      frame_stack=nc.frame_stack, trunk=nc.trunk, readout=nc.readout,
      action_negatives=nc.action_negatives, action_weight=nc.action_weight,
      action_start=nc.action_start, action_sigma=nc.action_sigma, over_models=nc.over_models)


def snapshot_path(workdir: workdir_lib.WorkDir, game: str, fraction: float, step: int) -> str:
  """Where the f~ snapshot after ``step`` updates of unit (game, fraction) lives."""
  return storage.join(workdir.natural_unit(game, fraction), 'snapshots', f'step_{step:d}.npz')


def write_snapshot(path: str, learner: natural_learning.NaturalLearner) -> None:
  """Saves f~ of every model (keys '<variant>/<seed>/<param path>') atomically."""
  arrays = {}
  for v in learner.variants:
    for s in range(learner.num_seeds):
      flat = flax.traverse_util.flatten_dict(learner.encoder_params(v, s), sep='/')
      arrays.update({f'{v}/{s}/{k}': np.asarray(x) for k, x in flat.items()})
  storage.makedirs(storage.dirname(path))
  workdir_lib.atomic_write_npz(path, **arrays)


def curve_steps(config: config_lib.AtariConfig, fraction: float) -> list[int]:
  """The updates after which the unit of `fraction` saves f~ snapshots: natural.curve_steps
  for the largest data fraction (the learning curve's), none for the others."""
  nc = config.natural
  if fraction != max(nc.data_fractions):
    return []
  return sorted(k for k in nc.curve_steps if 0 < k < nc.num_steps)


def read_snapshots(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
                   fraction: float) -> dict[int, dict[tuple[str, int], Any]]:
  """{step: {(variant, seed): f~ params}} of the saved snapshots (`curve_steps`)."""
  out = {}
  for step in curve_steps(config, fraction):
    path = snapshot_path(workdir, game, fraction, step)
    if not storage.exists(path):
      continue
    models: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    with np.load(io.BytesIO(storage.read_bytes(path))) as data:
      for key in data.files:
        v, s, rest = key.split('/', 2)
        models.setdefault((v, int(s)), {})[rest] = data[key]
    out[step] = {k: flax.traverse_util.unflatten_dict(p, sep='/') for k, p in models.items()}
  return out


def run(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
        fraction: float, replay_address: str, *, log_fn: LogFn | None = None,
        say: Callable[[str], None] = print) -> dict[str, Any] | None:
  """Trains every variant x seed in lockstep on the `fraction` table of `game`.

  Waits (saying so, up to `natural.export_timeout_s`) for the processor export first.

  Returns:
    The `trained.json` record (None on processes other than 0 of a multi-host learner group,
    which share the training but leave the record to process 0).
  """
  path = storage.join(workdir.natural_unit(game, fraction), 'trained.json')
  return workdir_lib.cached_result(path, lambda: _train(config, workdir, game, fraction,
                                                        replay_address, log_fn, say))


def _train(config, workdir, game, fraction, replay_address, log_fn, say):
  out_dir = workdir.natural_unit(game, fraction)
  storage.makedirs(out_dir)
  nc = config.natural
  export = checkpointing.wait_for_export(processor_export(config, workdir, game),
                                         nc.export_timeout_s,
                                         poll_s=min(5.0, nc.export_timeout_s), log=say)
  label = f'natural {game} f{round(100 * fraction):d}'
  iterator = make_iterator(config, workdir, game, fraction, replay_address)
  start = time.perf_counter()
  try:
    learner = make_learner(
        config, export, iterator, storage.join(out_dir, 'checkpoints'),
        logging_lib.with_prefix(log_fn, f'natural/{game}/f{round(100 * fraction):d}/'))
    for step in curve_steps(config, fraction):
      path = snapshot_path(workdir, game, fraction, step)
      if not storage.exists(path):
        learner.run(step, progress_label=label)
        # A learner resumed past `step` cannot give that point back: no snapshot then.
        if jax.process_index() == 0 and learner.global_step == step:
          write_snapshot(path, learner)
    metrics = learner.run(nc.num_steps, progress_label=label)
  finally:
    iterator.close()
  learner.close()
  if jax.process_index() != 0:
    return None
  fingerprints = [int(x) for x in np.asarray(learner.fingerprints)]
  return {
      'game': game, 'fraction': fraction, 'steps': nc.num_steps,
      'seconds': round(time.perf_counter() - start, 2),
      'final_loss': lockstep.flatten_metrics(
          {'loss': metrics['loss']}, nc.variants, nc.num_seeds) if metrics else {},
      'fingerprints': fingerprints,
      'identical_batches': len(set(fingerprints)) == 1,
      'resumed_from': learner.resumed_from,
  }
