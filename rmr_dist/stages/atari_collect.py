"""The Atari collect stage: what it plays, what it counts and what it records.

Collection is spread over collector actors (`rmr_dist.acting.atari_collector.Collector` wrapped
by `rmr_dist.distributed.atari_actors`) writing into the Reverb server(s);
`rmr_dist.distributed.atari_program` starts them, feeds them the work units, requeues the units of
a dead actor and checkpoints the servers. This module holds what needs no Ray: the work units,
the heads' checkpoints, the progress counters and status line, and the summary. Outputs:

  collect/summary.json   per game: episodes, transitions and items by split, mean return,
                         agent steps and frames per second, replay items per table; per game
                         and head: episodes, mean return and length, epsilon, persistence (and
                         the checkpoint a checkpoint head acted from); the replay checkpoint(s).
                         Written last: its presence marks the stage complete.
  episodes/index.json    the episode store's index (`EpisodeStore.write_index`)

TensorBoard (`collector/...`): steps and frames per second overall and per actor, episodes per
game and head (step: agent steps), and each head's mean return (`collector/<game>/
head_mean_return`, step: head).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rmr_dist import config as config_lib
from rmr_dist import logging as logging_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib
from rmr_dist.acting import atari_collector as collector_lib
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import splits
from rmr_dist.replay import atari_table_names
from rmr_dist.stages import atari_agent

LogFn = Callable[[dict[str, float], int], None]
Stats = Sequence[collector_lib.EpisodeStats]


def read_summary(config: config_lib.AtariConfig,
                 workdir: workdir_lib.WorkDir) -> dict[str, Any] | None:
  """The summary of a complete collection (with its replay checkpoint when
  `replay.checkpoint`), else None."""
  summary = workdir_lib.read_json(workdir.collect_summary)
  if summary is not None and (not config.replay.checkpoint or storage.isdir(workdir.replay)):
    return summary
  return None


def work_units(config: config_lib.AtariConfig) -> list[collector_lib.WorkUnit]:
  """Every (game, head, episode) of the collection budget, in a stable order."""
  return collector_lib.make_work_units(config.games, config.heads.num_heads,
                                       config.heads.episodes_per_head)


def head_checkpoints(config: config_lib.AtariConfig,
                     workdir_root: str) -> dict[str, list[str]] | None:
  """{game: policy checkpoints in training order} of checkpoint heads, else None."""
  if config.heads.base_policy != 'checkpoint':
    return None
  return atari_agent.resolve_checkpoints(config.heads, config.games, workdir_root)


def plan_line(config: config_lib.AtariConfig, num_units: int, num_actors: int,
              addresses: Mapping[str, str]) -> str:
  """The status line announcing the collection ({game: 'host:port'} of the replay servers)."""
  servers = sorted(set(addresses.values()))
  where = servers[0] if len(servers) == 1 else f'{len(servers)} servers {dict(addresses)}'
  return (f'collect: {num_units} episodes ({len(config.games)} games x '
          f'{config.heads.num_heads} heads x {config.heads.episodes_per_head}) on {num_actors} '
          f'collector actors; replay at {where}')


def replay_sizes(clients: Iterable[Any]) -> dict[str, int]:
  """{table: current size} over every server (one `reverb.Client` each)."""
  return {name: info.current_size for client in clients
          for name, info in client.server_info().items()}


def log_progress(config: config_lib.AtariConfig, done: Stats, total: int, elapsed: float,
                 actor_steps: Sequence[int], replay_items: int, log_fn: LogFn,
                 say: Callable[[str], None] = print) -> None:
  """Collector counters to `log_fn` (step: agent steps) and one status line to `say`.

  Args:
    config: the program config.
    done: the episodes finished so far.
    total: episodes of the whole collection.
    elapsed: seconds since collection started.
    actor_steps: agent steps played by each actor (index: actor).
    replay_items: items over every replay table (replay sizes and insert / sample rates are
      logged by the replay monitor).
    log_fn: `(scalars, step)` sink, e.g. `Logger.scalars`.
    say: status line sink.
  """
  steps = sum(s.length for s in done if not s.skipped)
  elapsed = max(elapsed, 1e-9)
  scalars = {'collector/steps_per_s': steps / elapsed,
             'collector/frames_per_s': steps * config.env.frame_skip / elapsed,
             'collector/episodes': len(done)}
  for i, n in enumerate(actor_steps):
    scalars[f'collector/actor_{i}/steps_per_s'] = n / elapsed
  for game in config.games:
    scalars[f'collector/{game}/episodes'] = sum(s.game == game for s in done)
  for head in range(config.heads.num_heads):
    scalars[f'collector/head_{head}/episodes'] = sum(s.head == head for s in done)
  log_fn(scalars, steps)
  eta = (logging_lib.format_duration(elapsed * (total - len(done)) / len(done)) if done
         else '?')
  say(f'collect: {len(done)}/{total} episodes, {steps} steps, '
      f'{scalars["collector/steps_per_s"]:.0f} steps/s, ETA {eta}, replay items {replay_items}')


def game_summary(config: config_lib.AtariConfig, stats: Stats,
                 sizes: Mapping[str, int]) -> dict[str, dict[str, Any]]:
  """Per game: episodes, transitions and items by split, mean return, rates, replay items."""
  games = {}
  for game in config.games:
    g = [s for s in stats if s.game == game]
    played = [s for s in g if not s.skipped]
    seconds = sum(s.seconds for s in played)
    steps = sum(s.length for s in played)
    games[game] = {
        'train_episodes': sum(s.split == splits.TRAIN for s in g),
        'val_episodes': sum(s.split == splits.VAL for s in g),
        'train_transitions': sum(s.length for s in g if s.split == splits.TRAIN),
        # Items each table of the game holds for these (windows: replay.transitions_per_item).
        'train_items': sum(atari_table_names.num_items(s.length, config.replay.transitions_per_item)
                           for s in g if s.split == splits.TRAIN),
        'val_transitions': sum(s.length for s in g if s.split == splits.VAL),
        'mean_return': sum(s.episode_return for s in g) / max(len(g), 1),
        'agent_steps_per_s': steps / seconds if seconds else None,
        'frames_per_s': steps * config.env.frame_skip / seconds if seconds else None,
        'replay_items': {k: v for k, v in sizes.items() if k.endswith(f'_{game}')},
    }
  return games


def head_summary(config: config_lib.AtariConfig, stats: Stats,
                 checkpoints: Mapping[str, list[str]] | None, log_fn: LogFn) -> dict[str, Any]:
  """Per game and head: mean return over its episodes (train and validation), episodes,
  epsilon, and the checkpoint it acted from (checkpoint heads); also to `log_fn`
  (`collector/<game>/head_mean_return`, step = head)."""
  from rmr_dist.acting import atari_heads as heads_lib  # pylint: disable=g-import-not-at-top
  from rmr_dist.acting import atari_policies  # pylint: disable=g-import-not-at-top
  h = config.heads
  specs = heads_lib.specs_for(h, config.seed)
  out: dict[str, Any] = {'base_policy': h.base_policy}
  for game in config.games:
    rows = []
    for head in range(h.num_heads):
      g = [s for s in stats if s.game == game and s.head == head]
      mean = sum(s.episode_return for s in g) / len(g) if g else None
      row = {'head': head, 'episodes': len(g), 'mean_return': mean,
             'mean_length': sum(s.length for s in g) / len(g) if g else None,
             'epsilon': specs[head].epsilon, 'persistence': specs[head].persistence}
      if checkpoints is not None:
        row['checkpoint'] = atari_policies.HeadCheckpointPolicies(
            checkpoints, h.num_heads).path_for(game, head)
      rows.append(row)
      if mean is not None:
        log_fn({f'collector/{game}/head_mean_return': mean}, head)
    out[game] = rows
  return out


def write_summary(config: config_lib.AtariConfig, workdir: workdir_lib.WorkDir, stats: Stats,
                  sizes: Mapping[str, int], replay_checkpoints: Sequence[str] | None,
                  logger: logging_lib.Logger,
                  say: Callable[[str], None] = print) -> dict[str, Any]:
  """Writes the episode store's index and collect/summary.json (last); returns the summary.

  Args:
    config: the program config.
    workdir: the run's work directory.
    stats: every episode of the collection (played or skipped on a resumed run).
    sizes: {table: size} over every replay server.
    replay_checkpoints: the servers' checkpoints in the work directory, one per server
      (None without `replay.checkpoint`).
    logger: TensorBoard writer (head returns; the summary as text).
    say: status line sink.
  """
  games = game_summary(config, stats, sizes)
  summary: dict[str, Any] = {
      'games': games, 'episodes_dir': workdir.episodes,
      'heads': head_summary(config, stats, head_checkpoints(config, workdir.root),
                            logger.scalars)}
  if replay_checkpoints is not None:
    paths = list(replay_checkpoints)
    train = sum(g['train_transitions'] for g in games.values())
    summary['replay_checkpoint'] = paths[0] if len(paths) == 1 else paths
    summary['replay_checkpoint_bytes_per_transition'] = (
        sum(storage.tree_bytes(p) for p in paths) / max(train, 1))
  atari_episode_store.EpisodeStore(workdir.episodes).write_index()
  workdir_lib.atomic_write_json(workdir.collect_summary, summary)
  logger.text('collect/summary', '```\n' + json.dumps(summary, indent=1) + '\n```')
  logger.flush()
  say(f'collect: done; summary at {workdir.collect_summary}')
  return summary
