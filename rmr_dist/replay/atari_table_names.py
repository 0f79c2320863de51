"""Names of the Reverb tables and which server holds a game's tables, without importing Reverb.

The learner stages name the tables they read (or, with `replay.learner_source='store'`, the same
items in the episode store) through this module, so they run where Reverb is not installed.
`rmr_dist.replay.atari_tables` builds the tables themselves.
"""

from __future__ import annotations

from collections.abc import Sequence

ABSTRACT = 'abstract'
NATURAL = 'natural'


def table_name(kind: str, game: str, fraction: float = 1.0) -> str:
  """Name of the `kind` ('abstract' | 'natural') table of `game` (natural: of a data fraction)."""
  if kind not in (ABSTRACT, NATURAL):
    raise ValueError(f'Unknown table kind {kind!r}; valid: {ABSTRACT!r}, {NATURAL!r}')
  if fraction >= 1.0:
    return f'{kind}_{game}'
  if kind != NATURAL or not 0.0 < fraction:
    raise ValueError(f'Only natural tables have data fractions in (0, 1); got {kind} {fraction}')
  return f'{kind}_{game}_f{round(100 * fraction):d}'


def server_games(games: Sequence[str], num_servers: int) -> list[tuple[str, ...]]:
  """Which games' tables each of `num_servers` Reverb servers holds (replay sharded by game).

  Game i of `games` goes to server i mod num_servers (round-robin: a stable assignment that a
  collector, a learner and a restarted run all compute alike from the config; every table of
  a game, its data fractions included, lives on that one server, so its items' shared chunks
  stay together).

  Args:
    games: the config's games, in order.
    num_servers: servers, 1 <= num_servers <= len(games).

  Returns:
    [num_servers] tuples of games; server s holds `games[s::num_servers]`.
  """
  if not 1 <= num_servers <= len(games):
    raise ValueError(f'num_servers={num_servers} must be in [1, {len(games)}] (the number of '
                     'games): replay is sharded by game')
  return [tuple(games[s::num_servers]) for s in range(num_servers)]


def num_items(transitions: int, transitions_per_item: int) -> int:
  """Items an episode of `transitions` transitions writes to each of its tables (windows of
  `transitions_per_item`, the last one possibly shorter: `rmr_dist.replay.atari_adders`)."""
  return -(-transitions // transitions_per_item)
