"""The Atari abstract stage: one (game, model) unit trains from Reverb, exports P, evaluates.

Outputs under `WorkDir.abstract_unit(game, model)`:
  checkpoints/   Orbax learner state (resumable)
  processor/     the processor export (params of P + the spec to rebuild it)
  result.json    the Table 2 row (written last: its presence marks the unit complete)

In a multi-host learner group (`jax.distributed`, `ray.learner_hosts` > 1) every process runs
`run`: each samples its share of the batch and they save checkpoints and the processor export
together (Orbax saves are collective); process 0 alone evaluates and writes result.json, and the
others return None.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import jax

from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.evaluation import atari_abstract_eval
from rmr_dist.learning import atari_abstract as abstract_learning
from rmr_dist.networks import processors
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import atari_iterators
from rmr_dist.replay import atari_table_names

LogFn = Callable[[dict[str, float], int], None]


def model_spec(config: config_lib.AbstractConfig, model: str) -> processors.ModelSpec:
  """The ModelSpec of a learned model ('mlp', 'deepsets' or 'mpnn') from the config."""
  return processors.ModelSpec(
      processor=model, latent_size=config.latent_size, hidden_size=config.hidden_size,
      num_message_steps=config.num_message_steps, aggregation=config.aggregation,
      mlp_hidden_size=config.mlp_hidden_size, slot_embedding=config.slot_embedding)


def make_iterator(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
                  replay_address: str) -> atari_iterators.Prefetcher:
  """This process's share of every batch of the game's abstract table (from Reverb or the
  episode store, `replay.learner_source`), prefetched."""
  source = atari_iterators.make_learner_source(
      config, workdir.episodes, replay_address, atari_table_names.ABSTRACT, game,
      config.abstract.batch_size // jax.process_count(), process_index=jax.process_index())
  return atari_iterators.Prefetcher(source, size=config.abstract.prefetch)


def make_learner(config: config_lib.AtariConfig, model: str, iterator: Iterator[Any],
                 checkpoint_dir: str | None,
                 log_fn: LogFn | None = None) -> abstract_learning.AbstractLearner:
  """The pmapped learner of `model`, resumed from `checkpoint_dir` if it holds a checkpoint."""
  ac = config.abstract
  return abstract_learning.AbstractLearner(
      model_spec(ac, model), learning_rate=ac.learning_rate, seed=config.seed,
      iterator=iterator, checkpoint_dir=checkpoint_dir, save_every=ac.save_every,
      keep=ac.keep_checkpoints, log_fn=log_fn, log_every=ac.log_every)


def make_evaluator(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir,
                   game: str) -> Callable[[Any, Any], dict[str, Any]]:
  """`evaluate(net, params)`: exact Table 2 metrics over every validation transition."""
  data = atari_abstract_eval.load_transitions(
      atari_episode_store.EpisodeStore(workdir.episodes), game)
  return lambda net, params: atari_abstract_eval.evaluate(net, params, data,
                                                          config.abstract.eval_batch_size)


def run(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str, model: str,
        replay_address: str, *, log_fn: LogFn | None = None,
        say: Callable[[str], None] = print) -> dict[str, Any] | None:
  """Trains (unless copy), exports the processor, evaluates; returns the Table 2 row.

  Args:
    config: program config.
    workdir: the run's work directory.
    game: the game.
    model: 'copy', 'mlp', 'deepsets' or 'mpnn'.
    replay_address: Reverb server holding `abstract_<game>` (unused with
      replay.learner_source='store').
    log_fn: receives (scalars, step) for TensorBoard.
    say: prints a status line.

  Returns:
    {game, model, slot_acc, bit_f1, n_eval_slots, n_eval_transitions, train_steps,
     train_seconds, learner_processes, learner_devices, resumed_from}; resumed_from is None or
    {step, params_sha256} of the checkpoint the learner restored. None on processes other
    than 0 of a multi-host group.
  """
  out_dir = workdir.abstract_unit(game, model)
  return workdir_lib.cached_result(storage.join(out_dir, 'result.json'),
                                   lambda: _train_and_evaluate(config, workdir, game, model,
                                                               replay_address, log_fn, say))


def _train_and_evaluate(config, workdir, game, model, replay_address, log_fn, say):
  out_dir = workdir.abstract_unit(game, model)
  storage.makedirs(out_dir)
  evaluate = make_evaluator(config, workdir, game) if jax.process_index() == 0 else None
  start = time.perf_counter()
  net, params, steps, resumed_from, curve = None, None, 0, None, {}
  if model != 'copy':
    iterator = make_iterator(config, workdir, game, replay_address)
    try:
      learner = make_learner(config, model, iterator, storage.join(out_dir, 'checkpoints'),
                             logging_lib.with_prefix(log_fn, f'abstract/{game}/{model}/'))
      resumed_from = learner.resumed_from
      if resumed_from is not None:
        say(f'abstract {game}/{model}: resumed from checkpoint step {resumed_from["step"]} in '
            f'{storage.join(out_dir, "checkpoints")}')
      curve = _curve(config, workdir, game, model, learner, evaluate, say)
      learner.run(config.abstract.num_steps, progress_label=f'abstract {game}/{model}')
    finally:
      iterator.close()
    learner.close()
    learner.export_processor(storage.join(out_dir, 'processor'))  # Collective (multi-host).
    net, params = abstract_learning.make_model(learner.spec), learner.params
    steps = config.abstract.num_steps
  if evaluate is None:
    return None  # Process 0 of a multi-host group evaluates and writes the row.
  row = {'game': game, 'model': model, **evaluate(net, params), 'train_steps': steps,
         'train_seconds': round(time.perf_counter() - start, 2),
         'learner_processes': jax.process_count(), 'learner_devices': jax.device_count(),
         'resumed_from': resumed_from, 'curve': curve}
  if log_fn is not None:
    log_fn({f'eval/abstract/{game}/{model}/slot_acc': row['slot_acc'],
            f'eval/abstract/{game}/{model}/bit_f1': row['bit_f1']}, steps)
  return row


def _curve(config, workdir, game, model, learner, evaluate, say) -> dict[str, dict[str, float]]:
  """Trains `learner` through abstract.curve_steps, evaluating after each (process 0).

  Returns:
    {str(step): {slot_acc, bit_f1}}. Each point is also kept in the unit's `curve.json` as soon
    as it is measured, so a learner resumed past a point still reports it.
  """
  path = storage.join(workdir.abstract_unit(game, model), 'curve.json')
  curve = workdir_lib.read_json(path) or {}
  for step in config.abstract.curve_steps:
    learner.run(step, progress_label=f'abstract {game}/{model}')
    if evaluate is None or str(step) in curve or learner.global_step != step:
      continue
    scores = evaluate(abstract_learning.make_model(learner.spec), learner.params)
    curve[str(step)] = {'slot_acc': scores['slot_acc'], 'bit_f1': scores['bit_f1']}
    workdir_lib.atomic_write_json(path, curve)
    say(f'abstract {game}/{model}: after {step} updates slot acc '
        f'{100 * scores["slot_acc"]:.2f}%, bit F1 {scores["bit_f1"]:.3f}')
  return curve
