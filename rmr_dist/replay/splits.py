"""Deterministic train/validation split by episode, balanced across heads.

Episodes are ordered head-major, k = head * episodes_per_head + episode, and episode k goes to
validation iff floor((k + 1) * f) > floor(k * f) for validation fraction f. This takes exactly
round-down(K * f) (or one more) of K episodes, spreads them evenly along the order, and so gives
every head ~f of its episodes: with 32 heads x 3 episodes and f = 0.5 it yields the paper's 48/48,
each head contributing 1 or 2 validation episodes. The split depends only on (head, episode), not
on which collector ran the episode or in which order.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

TRAIN = 'train'
VAL = 'val'


def episode_split(head: int, episode: int, episodes_per_head: int, val_fraction: float) -> str:
  """Returns 'train' or 'val' for episode `episode` of head `head`."""
  if not 0 <= episode < episodes_per_head:
    raise ValueError(f'episode {episode} outside [0, {episodes_per_head})')
  k = head * episodes_per_head + episode
  return VAL if math.floor((k + 1) * val_fraction) > math.floor(k * val_fraction) else TRAIN


def episode_uniform(seed: int, game: str, head: int, episode: int) -> float:
  """A fixed uniform draw in [0, 1) per episode: it ranks episodes for data fractions."""
  rng = np.random.default_rng([seed, zlib.crc32(game.encode()), head, episode, 0xF4AC])
  return float(rng.random())


def in_fraction(seed: int, game: str, head: int, episode: int, fraction: float) -> bool:
  """Whether an episode belongs to the data fraction `fraction` (nested: f1 < f2 => subset)."""
  return fraction >= 1.0 or episode_uniform(seed, game, head, episode) < fraction
