"""Plain-Python collector: plays episodes with policy heads and writes them to replay and disk.

No Ray here (`rmr_dist.distributed` wraps this class as an actor). A collector is handed work
units (game, head, episode); for each it plays the episode with that head, then
  * training episodes go, transition by transition, into the game's Reverb tables;
  * validation episodes (and with `store_all_episodes` every episode) go whole into the episode
    store, atomically, for exact evaluation later.
Every episode's randomness (sticky actions, head choices) derives from (seed, game, head, episode),
so the data do not depend on how units are spread over collectors, and a unit re-run after a crash
yields the same episode.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from rmr_dist import config as config_lib
from rmr_dist.acting import atari_heads as heads_lib
from rmr_dist.acting import atari_policies
from rmr_dist.envs import atari
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import splits

if TYPE_CHECKING:  # Reverb only for the annotation: the driver imports this without Reverb.
  from rmr_dist.replay import atari_adders


@dataclasses.dataclass(frozen=True, order=True)
class WorkUnit:
  """One episode to collect."""
  game: str
  head: int
  episode: int


@dataclasses.dataclass(frozen=True)
class EpisodeStats:
  """What collecting one episode produced.

  Attributes:
    game, head, episode, split: the unit and its split.
    length: agent steps (transitions) T.
    episode_return: sum of rewards.
    terminal: the game ended (False: truncated at max_episode_steps).
    seconds: wall time spent on the episode (0 when skipped).
    skipped: already complete in the episode store (resumed run), not played again.
  """
  game: str
  head: int
  episode: int
  split: str
  length: int
  episode_return: float
  terminal: bool
  seconds: float
  skipped: bool = False


def episode_seed(seed: int, game: str, head: int, episode: int) -> np.random.SeedSequence:
  """The seed sequence of one episode; stable across processes and Python versions."""
  return np.random.SeedSequence([seed, zlib.crc32(game.encode()), head, episode])


def episode_rngs(seed: int, unit: WorkUnit) -> tuple[int, np.random.Generator]:
  """(the env's reset seed, the head's generator) of one episode: all of its randomness."""
  env_seq, head_seq = episode_seed(seed, unit.game, unit.head, unit.episode).spawn(2)
  return int(env_seq.generate_state(1)[0]), np.random.default_rng(head_seq)


def make_work_units(games: Iterable[str], num_heads: int,
                    episodes_per_head: int) -> list[WorkUnit]:
  """Every (game, head, episode) of a collection budget, in a stable order."""
  return [WorkUnit(g, h, e) for g in games for h in range(num_heads)
          for e in range(episodes_per_head)]


class Collector:
  """Plays work units and writes their data.

  Args:
    config: the validated program config.
    store: episode store for validation (and optionally all) episodes.
    adder: writes training transitions to Reverb; None writes no replay (store only).
    policy_fn: builds the base policy from the heads config (default
      `atari_policies.make_policy(heads, checkpoints)`).
    checkpoints: with base_policy='checkpoint', {game: policy checkpoints in training order};
      head i of N acts from `atari_policies.head_checkpoint_index(i, N, K)` of them.
    replay_session: names the replay server(s) this collection writes to (one value per
      server lifetime). A training episode that is also stored records it; its store entry is
      written after its replay items, so a re-run of that episode (its collector died before
      reporting it) in the same session finds it stored and is skipped instead of inserting
      its items again. '' never skips a training episode.
  """

  def __init__(self, config: config_lib.AtariConfig, store: atari_episode_store.EpisodeStore,
               adder: atari_adders.TransitionAdder | None,
               policy_fn: Callable[[config_lib.HeadsConfig], atari_policies.Policy] | None = None,
               checkpoints: Mapping[str, Sequence[str]] | None = None,
               replay_session: str = ''):
    self._config = config
    self._store = store
    self._adder = adder
    self._replay_session = replay_session
    h = config.heads
    self._head_specs = heads_lib.specs_for(h, config.seed)
    self._base_policy = (policy_fn(h) if policy_fn is not None
                         else atari_policies.make_policy(h, checkpoints))
    self._envs: dict[str, atari.AtariEnv] = {}
    self.counters = {'steps': 0, 'episodes': 0, 'train_transitions': 0, 'seconds': 0.0}

  def _env(self, game: str) -> atari.AtariEnv:
    if game not in self._envs:
      self._envs[game] = atari.AtariEnv.from_config(game, self._config.env)
    return self._envs[game]

  def split_of(self, unit: WorkUnit) -> str:
    return splits.episode_split(unit.head, unit.episode, self._config.heads.episodes_per_head,
                                self._config.collect.val_fraction)

  def run_episode(self, unit: WorkUnit) -> EpisodeStats:
    """Plays one episode and writes it to replay (train) and/or the store."""
    split = self.split_of(unit)
    to_replay = split == splits.TRAIN and self._adder is not None
    to_store = split == splits.VAL or self._config.collect.store_all_episodes
    if to_store and self._store.contains(unit.game, split, unit.head, unit.episode):
      entry = self._store.entries(unit.game, split)
      entry = next(e for e in entry if e['head'] == unit.head and e['episode'] == unit.episode)
      # A stored training episode is in replay only if this session's server got its items.
      if not to_replay or (self._replay_session
                           and entry.get('replay_session') == self._replay_session):
        return EpisodeStats(unit.game, unit.head, unit.episode, split, entry['length'],
                            entry['return'], entry['terminal'], 0.0, skipped=True)

    start = time.perf_counter()
    env_seed, head_rng = episode_rngs(self._config.seed, unit)
    env = self._env(unit.game)
    head = heads_lib.Head(self._head_specs[unit.head],
                          atari_policies.policy_for(self._base_policy, unit.game, unit.head))
    head.begin_episode(head_rng)
    obs = env.reset(env_seed)
    rams, frames, actions, rewards = [obs.ram], [obs.frame], [], []
    if to_replay:
      fractions = tuple(f for f in self._config.natural.data_fractions
                        if splits.in_fraction(self._config.seed, unit.game, unit.head,
                                              unit.episode, f))
      self._adder.begin_episode(unit.game, fractions)
    terminal = False
    while True:
      action = head.act(obs)
      if to_replay:
        self._adder.add(obs, action)
      result = env.step(action)
      obs = result.observation
      actions.append(action)
      rewards.append(result.reward)
      if to_store:
        rams.append(obs.ram)
        frames.append(obs.frame)
      if result.terminal or result.truncated:
        terminal = result.terminal
        break
    if to_replay:
      self._adder.end_episode(obs)
    length = len(actions)
    episode_return = float(np.sum(rewards))
    if to_store:
      self._store.write(
          atari_episode_store.Episode(ram=np.stack(rams), action=np.asarray(actions, np.int32),
                                      reward=np.asarray(rewards, np.float32),
                                      frames=np.stack(frames)),
          game=unit.game, split=split, head=unit.head, episode_index=unit.episode,
          terminal=terminal, **{'return': episode_return},
          **({'replay_session': self._replay_session} if to_replay else {}))
    seconds = time.perf_counter() - start
    self.counters['steps'] += length
    self.counters['episodes'] += 1
    self.counters['train_transitions'] += length if to_replay else 0
    self.counters['seconds'] += seconds
    return EpisodeStats(unit.game, unit.head, unit.episode, split, length, episode_return,
                        terminal, seconds)

  def run(self, units: Iterable[WorkUnit],
          on_episode: Callable[[EpisodeStats], None] | None = None) -> list[EpisodeStats]:
    """Plays `units` in order; calls `on_episode` after each."""
    out = []
    for unit in units:
      stats = self.run_episode(unit)
      out.append(stats)
      if on_episode is not None:
        on_episode(stats)
    return out
