"""The abstract stage of one (game, model): train from Reverb, export P, evaluate exactly.

Outputs under `<workdir>/abstract/<game>/<model>/`:
  checkpoints/   Orbax learner state (resumable)
  processor/     the processor export (params of P + the spec to rebuild it)
  result.json    the Table 2 row (written last: its presence marks the unit complete)

In a multi-host learner group (`jax.distributed`, `ray.learner_hosts` > 1) every process runs
this function: each samples its share of the batch and they save checkpoints and the processor
export together (Orbax saves are collective); process 0 alone evaluates and writes result.json,
and the others return None.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax

from rmr_dist import config as config_lib
from rmr_dist.evaluation import abstract_eval
from rmr_dist.learning import abstract as abstract_learning
from rmr_dist.networks import processors
from rmr_dist.replay import episode_store
from rmr_dist.replay import iterators
from rmr_dist.replay import tables


def model_spec(config: config_lib.AbstractConfig, model: str) -> processors.ModelSpec:
  """The ModelSpec of a learned model ('mlp', 'deepsets' or 'mpnn') from the config."""
  return processors.ModelSpec(
      processor=model, latent_size=config.latent_size, hidden_size=config.hidden_size,
      num_message_steps=config.num_message_steps, aggregation=config.aggregation,
      mlp_hidden_size=config.mlp_hidden_size, slot_embedding=config.slot_embedding)


def unit_dir(workdir: str, game: str, model: str) -> str:
  return os.path.join(workdir, 'abstract', game, model)


def run_abstract_unit(config: config_lib.AtariConfig, game: str, model: str,
                      replay_address: str, workdir: str,
                      log_fn: Callable[[dict[str, float], int], None] | None = None
                      ) -> dict[str, Any]:
  """Trains (unless copy), exports the processor, evaluates; returns the Table 2 row.

  Args:
    config: program config.
    game: the game.
    model: 'copy', 'mlp', 'deepsets' or 'mpnn'.
    replay_address: Reverb server holding `abstract_<game>`.
    workdir: the run's work directory.
    log_fn: receives (scalars, step) for TensorBoard.

  Returns:
    {game, model, slot_acc, bit_f1, n_eval_slots, n_eval_transitions, train_steps,
     train_seconds, learner_processes, learner_devices, resumed_from}; resumed_from is None or
    {step, params_sha256} of the checkpoint the learner restored. None on processes other
    than 0 of a multi-host group.
  """
  out_dir = unit_dir(workdir, game, model)
  result_path = os.path.join(out_dir, 'result.json')
  if os.path.exists(result_path):
    with open(result_path) as f:
      return json.load(f)
  os.makedirs(out_dir, exist_ok=True)
  ac = config.abstract
  data = abstract_eval.load_transitions(episode_store.EpisodeStore(
      os.path.join(workdir, 'episodes')), game)
  start = time.perf_counter()
  resumed_from = None
  if model == 'copy':
    net, params, steps = None, None, 0
  else:
    spec = model_spec(ac, model)
    source = iterators.make_table_iterator(  # This process's share of every batch.
        replay_address, tables.table_name(tables.ABSTRACT, game),
        ac.batch_size // jax.process_count())
    prefetcher = iterators.Prefetcher(source, size=ac.prefetch)
    try:
      learner = abstract_learning.AbstractLearner(
          spec, learning_rate=ac.learning_rate, seed=config.seed,
          iterator=prefetcher, checkpoint_dir=os.path.join(out_dir, 'checkpoints'),
          save_every=ac.save_every, keep=ac.keep_checkpoints, log_fn=log_fn,
          log_every=ac.log_every)
      if learner.restored_step is not None:
        resumed_from = {'step': learner.restored_step,
                        'params_sha256': learner.restored_params_digest}
        print(f'abstract {game}/{model}: resumed from checkpoint step {learner.restored_step} '
              f'in {os.path.join(out_dir, "checkpoints")}', flush=True)
      learner.run(ac.num_steps, progress_label=f'abstract {game}/{model}')
    finally:
      prefetcher.close()
    learner.close()
    learner.export_processor(os.path.join(out_dir, 'processor'))  # Collective (multi-host).
    net, params, steps = abstract_learning.make_model(spec), learner.params, ac.num_steps
  if jax.process_index() != 0:
    return None  # Process 0 of a multi-host group evaluates and writes the row.
  train_seconds = time.perf_counter() - start
  row = {'game': game, 'model': model,
         **abstract_eval.evaluate(net, params, data, ac.eval_batch_size),
         'train_steps': steps, 'train_seconds': round(train_seconds, 2),
         'learner_processes': jax.process_count(), 'learner_devices': jax.device_count(),
         'resumed_from': resumed_from}
  episode_store.atomic_write_json(result_path, row)
  return row
