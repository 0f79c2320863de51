"""Writes environment transitions into the abstract and natural Reverb tables of a game.

One trajectory writer per collector, fed one step at a time: step t holds (ram_t, frame_t,
action_t). Each window of n <= `transitions_per_item` consecutive transitions t..t+n-1 becomes one
item per table referencing steps t..t+n (`rmr_dist.replay.atari_tables` gives the columns), with
priority n:
  abstract_<game>: (action_t..t+n-1, ram_t..t+n)
  natural_<game>:  (action_t..t+n-1, frame_t..t+n, ram_t..t+n)
Windows tile the episode: consecutive windows share their boundary step, every transition is in
exactly one window. The items point at the same chunks, so a frame crosses the wire and is stored
once.

Episodes of up to `segment_steps` transitions (default 1,024: every episode of the `local` and
`study` budgets) are atomic in replay: steps are appended (and chunks compressed) as they come,
but the items are created only in `end_episode`, and Reverb sends only chunks that items
reference. A collector that dies mid-episode therefore leaves nothing of that episode in the
tables, and its retry writes the episode exactly once. (One that dies *during* `end_episode`,
while it streams the items, can leave a prefix of the episode's windows: replay has no
multi-item transaction.)

Longer episodes (the `paper` config allows 27,000 steps) are written in segments of
`segment_steps` transitions: a segment's items are created as soon as its last step is
appended, and each segment is atomic as above. The writer must keep a reference to every step
that an item still to be created will use, and Reverb 0.14's writer walks all kept references
on every `Append` and `CreateItem` (`CellRef::chunk_key` via `GetKeepKeys`), so keeping a whole
episode costs time quadratic in its length: writing a 27,000-step Pong episode cost ~10x more
per step than a 1,000-step one (README, "Benchmarks"). Segments bound the kept references to
`segment_steps + 1`. The price: a collector that dies in a long episode leaves its finished
segments in replay, and its retry writes them again (at-least-once, per segment).

This is the collector's hot loop, so it talks to Reverb 0.14's C++ trajectory writer directly
(`Client._client.NewTrajectoryWriter`, the object `reverb.TrajectoryWriter` wraps): one `Append`
per step and one `CreateItem` per table and window, with no per-step structure flattening in
Python. Items are still validated against the table signatures by the C++ writer. `dm-reverb`
is pinned to 0.14.0 (constraints.txt); tests exercise this path against a real server.

With replay sharded by game over several servers, `make_adder` gives a `GameRoutedAdder`: one
TransitionAdder per server, each episode written whole to its game's server.
"""

from __future__ import annotations

import numpy as np
import reverb
from reverb import pybind

from rmr_dist.envs import atari
from rmr_dist.replay import atari_tables

# Column order of a step: ram [128] uint8, frame [H, W, 3] uint8, action [18] uint8 one-hot.
_RAM, _FRAME, _ACTION = 0, 1, 2
_ONE_HOT = np.eye(atari.NUM_ACTIONS, dtype=np.uint8)  # Row a is the one-hot of action a.
_NO_ACTION = np.zeros(atari.NUM_ACTIONS, np.uint8)  # An episode's last step has no action.
_UNSQUEEZED_2 = [False] * 2  # Columns keep their time axis: an item is a window of steps.
_UNSQUEEZED_3 = [False] * 3
# Reverb's trajectory writer logs "The number of pending items is alarmingly high" once items
# waiting to be sent plus items sent but not yet confirmed reach 50
# (kPendingItemsWarningThreshold in trajectory_writer.cc). `end_episode` keeps that count below
# _FLUSH_AT + items of one step by waiting, whenever it reaches _FLUSH_AT, until at most
# _FLUSH_KEEP are unconfirmed: the writer's stream stays busy (it is never drained to zero
# mid-episode), and the pending count stays well under the threshold.
_FLUSH_AT = 32
_FLUSH_KEEP = 16
# Episodes longer than this many transitions are written in atomic segments (module docstring).
SEGMENT_STEPS = 1024


class TransitionAdder:
  """Adds the transitions of one episode at a time.

  Args:
    client: a Reverb client connected to the server holding the game's tables.
    max_episode_steps: the longest episode (agent steps) this adder will see.
    chunk_length: steps per compressed chunk. Longer chunks compress more per call (cheaper to
      write) but a sampled item then fetches and decompresses the whole chunks it references.
    transitions_per_item: the longest window an item holds (the last of an episode may be
      shorter). Fewer, longer items make writing cheaper; a sampled item fetches the chunks
      of its whole window. Equal to `chunk_length`, a window spans one chunk and one step of
      the next.
    segment_steps: episodes longer than this many transitions are written in atomic segments
      of this length (rounded up to whole windows), so the writer keeps at most this many
      steps alive (module docstring).
  """

  def __init__(self, client: reverb.Client, *, max_episode_steps: int, chunk_length: int = 1,
               transitions_per_item: int = 1, segment_steps: int = SEGMENT_STEPS):
    if chunk_length < 1:
      raise ValueError(f'chunk_length must be >= 1, got {chunk_length}')
    if transitions_per_item < 1:
      raise ValueError(f'transitions_per_item must be >= 1, got {transitions_per_item}')
    if segment_steps < 1:
      raise ValueError(f'segment_steps must be >= 1, got {segment_steps}')
    self._window = transitions_per_item
    # Whole windows per segment: a window never spans two segments.
    self._segment = -(-segment_steps // transitions_per_item) * transitions_per_item
    keep_alive = max(min(max_episode_steps, self._segment) + 1, chunk_length, 2)
    options = pybind.ConstantChunkerOptions(chunk_length, keep_alive)
    self._writer = client._client.NewTrajectoryWriter(options, True)  # pylint: disable=protected-access
    self._max_steps = max_episode_steps
    self._tables: tuple[str, list[str]] | None = None
    # Cell references of the current segment's steps, in order (the first is the previous
    # segment's last step).
    self._steps: list = []
    self._episode_steps = 0  # Steps appended in this episode.
    self._pending = 0  # An upper bound on the writer's unconfirmed items.
    self.items_written = 0

  def begin_episode(self, game: str, fractions: tuple[float, ...] = ()) -> None:
    """Starts an episode of `game`; its natural items also go to the tables of `fractions`."""
    self._tables = (atari_tables.table_name(atari_tables.ABSTRACT, game),
                    [atari_tables.table_name(atari_tables.NATURAL, game)] +
                    [atari_tables.table_name(atari_tables.NATURAL, game, f)
                     for f in fractions if f < 1.0])
    self._steps = []
    self._episode_steps = 0
    self._pending = 0

  def _append(self, observation: atari.Observation, action_one_hot: np.ndarray) -> None:
    if self._episode_steps > self._max_steps:
      raise ValueError(f'Episode longer than max_episode_steps={self._max_steps}')
    self._steps.append(self._writer.Append([observation.ram, observation.frame,
                                            action_one_hot]))
    self._episode_steps += 1

  def _create_items(self) -> None:
    """Creates the items of every window of `self._steps`, then keeps only its last step."""
    abstract_table, natural_tables = self._tables
    transitions = len(self._steps) - 1
    for start in range(0, transitions, self._window):
      if self._pending >= _FLUSH_AT:
        self._writer.Flush(_FLUSH_KEEP, -1)  # Blocks until <= _FLUSH_KEEP are unconfirmed.
        self._pending = _FLUSH_KEEP
      n = min(self._window, transitions - start)
      steps = self._steps[start:start + n + 1]
      actions = [s[_ACTION] for s in steps[:-1]]
      rams = [s[_RAM] for s in steps]
      # Column lists in the tables' signature order (keys sorted): see atari_tables.py.
      self._writer.CreateItem(abstract_table, float(n), [actions, rams], _UNSQUEEZED_2)
      natural_columns = [actions, [s[_FRAME] for s in steps], rams]
      for natural_table in natural_tables:
        self._writer.CreateItem(natural_table, float(n), natural_columns, _UNSQUEEZED_3)
      self.items_written += 1 + len(natural_tables)
      self._pending += 1 + len(natural_tables)
    self._steps = self._steps[-1:]

  def add(self, observation: atari.Observation, action: int) -> None:
    """Records that `action` was taken at `observation` (the transition completes next call)."""
    if len(self._steps) > self._segment:  # The segment's last step is in: write its items.
      self._create_items()
    self._append(observation, _ONE_HOT[action])

  def end_episode(self, final_observation: atari.Observation) -> None:
    """Records the last observation, creates the last segment's items and flushes them."""
    self._append(final_observation, _NO_ACTION)
    self._create_items()
    self._writer.EndEpisode(True, None)
    self._steps = []

  def close(self) -> None:
    self._writer.Close()


class GameRoutedAdder:
  """Sends each episode to the adder of its game's Reverb server (replay sharded by game).

  Same interface as TransitionAdder; an episode goes entirely to one server, so the atomicity
  of `TransitionAdder` holds per server.

  Args:
    adders: game -> the TransitionAdder writing to the server that holds that game's tables
      (games on the same server share one adder).
  """

  def __init__(self, adders: dict[str, TransitionAdder]):
    self._adders = dict(adders)
    self._current: TransitionAdder | None = None

  @property
  def items_written(self) -> int:
    return sum(a.items_written for a in {id(a): a for a in self._adders.values()}.values())

  def begin_episode(self, game: str, fractions: tuple[float, ...] = ()) -> None:
    if game not in self._adders:
      raise KeyError(f'No replay server for game {game!r}; known games: {sorted(self._adders)}')
    self._current = self._adders[game]
    self._current.begin_episode(game, fractions)

  def add(self, observation: atari.Observation, action: int) -> None:
    self._current.add(observation, action)

  def end_episode(self, final_observation: atari.Observation) -> None:
    self._current.end_episode(final_observation)
    self._current = None

  def close(self) -> None:
    for adder in {id(a): a for a in self._adders.values()}.values():
      adder.close()


def make_adder(addresses: dict[str, str], *, max_episode_steps: int, chunk_length: int,
               transitions_per_item: int = 1) -> TransitionAdder | GameRoutedAdder:
  """The adder for replay at `addresses` (game -> 'host:port'): one trajectory writer per server.

  Returns a plain TransitionAdder when every game lives on one server, else a GameRoutedAdder.
  """
  by_address = {address: TransitionAdder(reverb.Client(address),
                                         max_episode_steps=max_episode_steps,
                                         chunk_length=chunk_length,
                                         transitions_per_item=transitions_per_item)
                for address in sorted(set(addresses.values()))}
  if len(by_address) == 1:
    return next(iter(by_address.values()))
  return GameRoutedAdder({game: by_address[address] for game, address in addresses.items()})
