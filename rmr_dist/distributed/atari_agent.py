"""The agent stage on Ray: collector actors and one learner train a double-DQN policy per game.

Per game:

  * a Reverb server in the driver holds the game's agent table (`replay.atari_agent_table`: uniform,
    FIFO, SampleToInsertRatio rate limiter), dialled at 127.0.0.1 locally;
  * a `ParamServer` actor (no CPU) holds the learner's latest parameters and their version;
  * `agent.num_actors` `AgentActorWorker` actors (1 CPU each) play the game epsilon-greedily
    (`acting.atari_agent_actor`), pull the parameters every `param_pull_interval` steps, write
    n-step transitions to the table, and return their finished episodes every `actor_chunk_steps`;
  * the learner (`learning.atari_agent.AgentLearner`, pmapped over the driver's local devices) runs
    in the driver beside the server: it samples batches as the rate limiter allows, updates,
    publishes its parameters as often as actors pull them, and saves the policy at the updates
    of `learning.atari_agent.checkpoint_updates` (the last one when training ends).

Training ends when the actors have played `num_env_steps` and the learner's next sample stays
blocked for `sample_timeout_s` (it has used up its share of the data). A game whose
`result.json` exists is done; an interrupted game is retrained from scratch (its partial
checkpoints removed). The learner runs in the driver, so the driver's node needs the CPU (or
GPU) for it; collectors go anywhere.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any

import numpy as np
import ray

from rmr_dist import config as config_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.distributed import placement
from rmr_dist.stages import atari_agent


@ray.remote(num_cpus=0)
class ParamServer:
  """The learner's latest parameters, for actors to pull (Acme's variable source)."""

  def __init__(self):
    self._latest: tuple[int, Any] | None = None

  def set(self, version: int, params: Any) -> None:
    self._latest = (version, params)

  def get(self) -> tuple[int, Any] | None:
    return self._latest


class AgentActorWorker:
  """An AgentActor writing to the agent table at `address` and pulling from `param_server`."""

  def __init__(self, config: config_lib.AtariConfig, game: str, actor_index: int,
               address: str, param_server: Any):
    import reverb  # pylint: disable=g-import-not-at-top
    from rmr_dist.acting import atari_agent_actor  # pylint: disable=g-import-not-at-top
    from rmr_dist.replay import atari_agent_table  # pylint: disable=g-import-not-at-top
    self._adder = atari_agent_table.NStepAdder(reverb.Client(address),
                                               atari_agent_table.table_name(game))
    self._actor = atari_agent_actor.AgentActor(
        game, config.env, config.agent, actor_index, config.seed, self._adder.add,
        lambda: ray.get(param_server.get.remote()))

  def run(self, num_steps: int) -> list[Any]:
    return self._actor.run(num_steps)

  def close(self) -> None:
    self._adder.close()


def _start_server(config: config_lib.AtariConfig, game: str) -> Any:
  from rmr_dist.replay import atari_agent_table  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_tables  # pylint: disable=g-import-not-at-top
  a = config.agent
  table = atari_agent_table.make_table(game, max_size=a.replay_size, min_size=a.min_replay_size,
                                       samples_per_insert=a.samples_per_insert,
                                       error_buffer=a.error_buffer)
  return atari_tables.make_server([table], port=0)


def train_game(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, game: str,
               logger: Any, host: str) -> dict[str, Any]:
  """Trains the policy of `game` (or reads its result); returns result.json's record."""
  directory = atari_agent.game_dir(workdir, game)
  result_path = os.path.join(directory, 'result.json')
  result = workdir_lib.read_json(result_path)
  if result is not None:
    print(f'agent: {game}: already trained ({result_path}).')
    return result
  shutil.rmtree(directory, ignore_errors=True)  # An interrupted run's partial checkpoints.
  os.makedirs(directory)
  from rmr_dist import checkpointing  # pylint: disable=g-import-not-at-top
  from rmr_dist.learning import atari_agent as agent_learning  # pylint: disable=g-import-not-at-top
  from rmr_dist.replay import atari_agent_table  # pylint: disable=g-import-not-at-top
  a = config.agent
  server = _start_server(config, game)
  address = f'{host}:{server.port}'
  timeout_ms = int(1000 * a.sample_timeout_s)
  from rmr_dist.envs import atari  # pylint: disable=g-import-not-at-top
  actions = atari.agent_actions(game, a.action_set)
  learner = agent_learning.AgentLearner(
      a, lambda: atari_agent_table.make_batch_iterator(address, game, a.batch_size, timeout_ms),
      seed=config.seed, actions=actions)
  params_server = ParamServer.remote()
  publish_every = max(1, int(a.param_pull_interval * a.samples_per_insert / a.batch_size))
  save_at = agent_learning.checkpoint_updates(a)
  saved: list[str] = []

  def publish() -> None:
    ray.get(params_server.set.remote(learner.steps, learner.params()))

  def save() -> None:
    saved.append(checkpointing.save_policy(atari_agent.policy_dir(directory, learner.steps),
                                           learner.params(), a.hidden_sizes,
                                           encoding=a.ram_encoding, actions=actions))

  publish()
  save()
  actor_cls = ray.remote(num_cpus=1)(AgentActorWorker)
  actors = [actor_cls.remote(config, game, i, address, params_server)
            for i in range(a.num_actors)]
  per_actor = -(-a.num_env_steps // a.num_actors)
  submitted = [0] * a.num_actors  # Agent steps asked of each actor ...
  last_steps = [0] * a.num_actors  # ... and played, as far as the driver knows.
  pending: dict[Any, tuple[int, int]] = {}  # Chunk -> (actor, its steps when it ends).

  def submit(i: int) -> None:
    n = min(a.actor_chunk_steps, per_actor - submitted[i])
    if n > 0:
      submitted[i] += n
      pending[actors[i].run.remote(n)] = (i, submitted[i])

  # Two chunks queued per actor: it starts its next chunk as soon as one ends, without waiting
  # for the driver (whose learner may sit in a sample blocked by the rate limiter until the
  # actor inserts again).
  for _ in range(2):
    for i in range(a.num_actors):
      submit(i)
  poll_every = 0.05  # Seconds between the driver's checks for finished chunks.
  last_poll = 0.0
  rows: list[dict[str, Any]] = []
  start = time.perf_counter()
  last_status = start
  metrics_sum: dict[str, float] = {}
  metrics_n = 0
  print(f'agent: {game}: {a.num_env_steps} agent steps on {a.num_actors} actor(s) over '
        f'{len(actions)} actions {actions}, about '
        f'{save_at[-1]} updates of {a.batch_size} (samples per insert '
        f'{a.samples_per_insert}); checkpoints at updates {save_at}', flush=True)
  while True:
    if pending and time.perf_counter() - last_poll >= poll_every:
      last_poll = time.perf_counter()
      ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
      for ref in ready:
        i, chunk_end = pending.pop(ref)
        for rec in ray.get(ref):
          last_steps[i] = rec.actor_steps
          env_steps = sum(last_steps)
          rows.append({'env_steps': env_steps, 'actor': rec.actor,
                       'return': rec.episode_return, 'length': rec.length,
                       'epsilon': rec.epsilon, 'params_version': rec.params_version,
                       'wall_s': time.perf_counter() - start})
          logger.scalars({f'agent/{game}/episode_return': rec.episode_return,
                          f'agent/{game}/episode_length': rec.length,
                          f'agent/{game}/epsilon': rec.epsilon}, step=env_steps)
        last_steps[i] = chunk_end
        submit(i)
    metrics = learner.step()
    if metrics is None:
      if not pending:
        break
      continue  # Blocked while the actors were still filling replay: wait on.
    if learner.steps % publish_every == 0:
      publish()
    if learner.steps in save_at[1:-1]:
      save()
    if learner.steps % a.log_every == 0:
      values = learner.to_floats(metrics)
      for k, v in values.items():
        metrics_sum[k] = metrics_sum.get(k, 0.0) + v
      metrics_n += 1
      logger.scalars({f'agent/{game}/{k}': v for k, v in values.items()}
                     | {f'agent/{game}/updates': learner.steps}, step=sum(last_steps))
    now = time.perf_counter()
    if now - last_status >= config.collect.status_interval_s:
      last_status = now
      recent = [r['return'] for r in rows[-10:]]
      print(f'agent: {game}: {sum(last_steps)} steps, {learner.steps} updates, '
            f'{len(rows)} episodes, recent mean return '
            f'{np.mean(recent) if recent else float("nan"):.2f}, {now - start:.0f} s',
            flush=True)
  if learner.steps != int(os.path.basename(saved[-1]).split('_')[-1]):
    save()
  for actor in actors:
    ray.kill(actor)
  ray.kill(params_server)
  server.stop()
  seconds = time.perf_counter() - start
  atari_agent.write_returns(directory, rows, f'{game}: double DQN on RAM, {learner.steps} '
                            f'updates, {seconds / 60:.1f} min')
  result = {'game': game, 'env_steps': sum(last_steps), 'updates': learner.steps,
            'episodes': len(rows), 'seconds': seconds,
            'checkpoints': [os.path.basename(p) for p in saved],
            'curve': atari_agent.curve_points(rows),
            'first_10_mean_return': float(np.mean([r['return'] for r in rows[:10]]))
            if rows else None,
            'last_10_mean_return': float(np.mean([r['return'] for r in rows[-10:]]))
            if rows else None}
  workdir_lib.atomic_write_json(result_path, result)
  logger.flush()
  print(f'agent: {game}: done in {seconds:.0f} s: {learner.steps} updates, {len(rows)} '
        f'episodes, mean return first 10 {result["first_10_mean_return"]}, last 10 '
        f'{result["last_10_mean_return"]}; checkpoints {result["checkpoints"]}',
        file=sys.stdout, flush=True)
  return result


def run(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, logger: Any,
        host: str) -> list[dict[str, Any]]:
  """Trains (or reads) every game's policy, in order.

  Raises:
    ConfigError: before any game, if the agent's actors cannot all be placed.
  """
  placement.check_actor_cpus(config.ray, config.agent.num_actors, 'agent.num_actors')
  return [train_game(config, workdir, game, logger, host) for game in config.games]
