"""Writes environment transitions into the abstract and natural Reverb tables of a game.

One `reverb.TrajectoryWriter` per collector. Each agent step appends the observation (RAM and
frame) as a partial step and closes it with the action; once the next observation is appended,
one item per table is created referencing steps [-2] and [-1]. The writer chunks and compresses
columns in the background and both tables' items point at the same chunks, so a frame crosses the
wire and is stored once.
"""

from __future__ import annotations

import numpy as np
import reverb

from rmr_dist.envs import atari
from rmr_dist.replay import tables

_NO_ACTION = np.zeros(atari.NUM_ACTIONS, np.uint8)  # Closes an episode's last step.


class TransitionAdder:
  """Adds (obs_t, action_t, obs_t+1) transitions of one episode at a time.

  Args:
    client: a Reverb client connected to the server holding the game's tables.
    chunk_length: steps per compressed chunk. Short chunks keep sampling cheap (a sampled item
      fetches only the chunks it references); frames compress well one by one.
  """

  def __init__(self, client: reverb.Client, *, chunk_length: int = 1):
    self._writer = client.trajectory_writer(num_keep_alive_refs=max(2, chunk_length))
    self._chunk_length = chunk_length
    self._configured = False
    self._tables: tuple[str, str] | None = None
    self._columns = None
    self.items_written = 0

  def begin_episode(self, game: str, observation: atari.Observation) -> None:
    """Starts an episode of `game` at `observation`."""
    self._tables = (tables.table_name(tables.ABSTRACT, game),
                    tables.table_name(tables.NATURAL, game))
    self._writer.append({'ram': observation.ram, 'frame': observation.frame}, partial_step=True)

  def add(self, action: int, next_observation: atari.Observation) -> None:
    """Records `action` taken at the current observation and the observation that followed."""
    self._writer.append({'action': atari.one_hot(action)})
    self._writer.append({'ram': next_observation.ram, 'frame': next_observation.frame},
                        partial_step=True)
    if not self._configured:
      for key in ('ram', 'frame', 'action'):
        self._writer.configure((key,), num_keep_alive_refs=max(2, self._chunk_length),
                               max_chunk_length=self._chunk_length)
      self._configured = True
    if self._columns is None:  # The history's columns are persistent objects: look them up once.
      history = self._writer.history
      self._columns = (history['ram'], history['frame'], history['action'])
    ram, frame, action_col = self._columns
    abstract_table, natural_table = self._tables
    self._writer.create_item(abstract_table, 1.0, {
        'ram_t': ram[-2], 'action': action_col[-2], 'ram_tp1': ram[-1]})
    self._writer.create_item(natural_table, 1.0, {
        'frame_t': frame[-2], 'action': action_col[-2], 'frame_tp1': frame[-1], 'ram_t': ram[-2]})
    self.items_written += 2

  def end_episode(self) -> None:
    """Flushes the episode's items to the server and clears the writer's buffers."""
    # Close the final observation's partial step (no action follows it; nothing references it).
    self._writer.append({'action': _NO_ACTION})
    self._writer.end_episode(clear_buffers=True)

  def close(self) -> None:
    self._writer.close()
