"""Atari 2600 through ale-py: 128-byte RAM and a frame at every agent step.

A frame is RGB ([H, W, 3] uint8), or, with `palette_frames=True` at ALE's native size, ALE's
palette indices ([210, 160] uint8, exact and 3x smaller; `rmr_dist.envs.atari_palette` rebuilds
the RGB).
Collectors use palette frames whenever the config keeps the native size (`stored_frame_shape`).

We drive `ale_py.ALEInterface` directly (ROMs ship in the wheel) with the full 18-action set, so
actions are the paper's 18-way one-hot. Frame skip and sticky actions are applied here, per
emulator frame exactly as ALE's own `repeat_action_probability` does (Machado et al., 2018), but
with a numpy RNG that we seed per episode. ALE's own stochasticity is switched off, so an episode
is a pure function of (ROM, episode seed, actions): a collector can reuse one emulator for many
episodes and any episode can be replayed bit-exactly on any machine.

Transitions are deterministic by default (no sticky actions: the paper assumes deterministic
RAM transitions); diversity across episodes comes from random no-op starts (Agent57's
protocol): every reset plays ``k ~ U{0..noop_max}`` NOOP agent steps, k drawn from the
episode's seed, before the first returned observation.
"""

from __future__ import annotations

from typing import NamedTuple

import ale_py
import numpy as np
from ale_py import roms

from rmr_dist import config as config_lib
from rmr_dist.envs import atari_palette

NUM_ACTIONS = 18  # The full Atari action set.
RAM_SIZE = 128  # Bytes of Atari 2600 RAM.
NATIVE_FRAME_SHAPE = (210, 160)  # ALE screen height, width.


def stored_frame_shape(frame_shape: tuple[int, int]) -> tuple[int, ...]:
  """Shape of one frame as collectors store it for a configured (height, width).

  Native size: palette indices (210, 160); resized: RGB (h, w, 3) (a resize mixes colours).
  """
  h, w = frame_shape
  return (h, w) if (h, w) == NATIVE_FRAME_SHAPE else (h, w, 3)


_NO_FRAME = np.zeros(0, np.uint8)  # The frame of an env with read_frames=False.


class Observation(NamedTuple):
  """What the agent sees at one step.

  Attributes:
    ram: [128] uint8, the console RAM.
    frame: [H, W, 3] uint8 RGB screen (resized to the configured size), or with palette frames
      [210, 160] uint8 ALE palette indices.
  """
  ram: np.ndarray
  frame: np.ndarray


class StepResult(NamedTuple):
  """The outcome of one agent step.

  Attributes:
    observation: the next observation.
    reward: reward summed over the skipped frames.
    terminal: the game is over.
    truncated: the episode hit `max_episode_steps` without the game ending.
  """
  observation: Observation
  reward: float
  terminal: bool
  truncated: bool


def one_hot(action: int) -> np.ndarray:
  """The paper's 18-way one-hot action encoding: [18] uint8."""
  if not 0 <= action < NUM_ACTIONS:
    raise ValueError(f'action {action} outside [0, {NUM_ACTIONS})')
  out = np.zeros(NUM_ACTIONS, np.uint8)
  out[action] = 1
  return out


def agent_actions(game: str, action_set: str) -> tuple[int, ...]:
  """The action indices (into the 18) an agent of `game` uses: all 18 ('full') or ALE's
  minimal set for the game ('minimal', e.g. Pong (0, 1, 3, 4, 11, 12)), in increasing order."""
  if action_set not in config_lib.AGENT_ACTION_SETS:
    raise ValueError(f'action_set={action_set!r}; valid: {config_lib.AGENT_ACTION_SETS}')
  if action_set == 'full':
    return tuple(range(NUM_ACTIONS))
  config_lib.check_game(game)
  ale = ale_py.ALEInterface()
  ale.setLoggerMode(ale_py.LoggerMode.Error)
  ale.loadROM(roms.get_rom_path(game))
  return tuple(sorted(a.value for a in ale.getMinimalActionSet()))


def _resize(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of [210, 160, 3] uint8 to [h, w, 3] uint8 (area-averaging when shrinking)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  h, w = shape
  return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR, reducing_gap=2.0))


class AtariEnv:
  """One ALE emulator for one game, reset with a seed per episode.

  Args:
    game: ale-py ROM id, e.g. 'pong'.
    frame_skip: emulator frames per agent step.
    repeat_action_probability: per-frame probability of repeating the previous frame's action
      (0: deterministic transitions).
    max_episode_steps: agent steps after which an episode is truncated (no-ops not counted).
    noop_max: each reset plays a seeded number of NOOP steps in 0..noop_max first.
    frame_shape: (height, width) of returned frames; (210, 160) is native (no resize).
    palette_frames: return ALE palette indices [210, 160] instead of RGB (native size only).
    read_frames: read the screen at every step; False returns an empty [0] frame (agents that
      act on the RAM alone skip the screen copy and resize).
  """

  def __init__(self, game: str, *, frame_skip: int = 4, repeat_action_probability: float = 0.0,
               max_episode_steps: int = 27_000,
               frame_shape: tuple[int, int] = NATIVE_FRAME_SHAPE, noop_max: int = 0,
               palette_frames: bool = False, read_frames: bool = True):
    config_lib.check_game(game)
    self.read_frames = read_frames
    if noop_max < 0:
      raise ValueError(f'noop_max={noop_max!r} must be >= 0')
    if palette_frames and tuple(frame_shape) != NATIVE_FRAME_SHAPE:
      raise ValueError(f'palette_frames=True needs the native frame_shape {NATIVE_FRAME_SHAPE}, '
                       f'got {tuple(frame_shape)} (resized frames are RGB)')
    self.palette_frames = palette_frames
    self.noop_max = noop_max
    self.game = game
    self.frame_skip = frame_skip
    self.repeat_action_probability = repeat_action_probability
    self.max_episode_steps = max_episode_steps
    self.frame_shape = tuple(frame_shape)
    self._ale = ale_py.ALEInterface()
    self._ale.setLoggerMode(ale_py.LoggerMode.Error)
    # ALE's own randomness off: we apply sticky actions with our seeded RNG.
    self._ale.setInt('random_seed', 0)
    self._ale.setFloat('repeat_action_probability', 0.0)
    self._ale.setInt('frame_skip', 1)
    self._ale.loadROM(roms.get_rom_path(game))
    # The full action set in ALE's canonical order (NOOP, FIRE, UP, ..., DOWNLEFTFIRE); games
    # whose minimal set is smaller simply ignore the extra inputs, as on the console.
    self._actions = sorted(ale_py.Action, key=lambda a: a.value)
    # The power-on state, RNG included: every episode restarts from exactly this state, so an
    # episode does not depend on what the emulator ran before (reset_game alone is not enough:
    # some ROMs, e.g. private_eye, read state that ALE's reset leaves behind).
    self._start_state = self._ale.cloneState(include_rng=True)
    self._ram = np.empty(RAM_SIZE, np.uint8)
    self._screen = np.empty(NATIVE_FRAME_SHAPE + (() if palette_frames else (3,)), np.uint8)
    self._read_screen = self._ale.getScreen if palette_frames else self._ale.getScreenRGB
    # The screen buffer is not part of the emulator state: keep the power-on screen to return
    # at every reset (later frames are fully redrawn by the console each frame).
    self._start_screen = self._read_screen()
    if palette_frames:  # A cheap guard that the palette rebuilds this ale-py's RGB exactly.
      if not np.array_equal(atari_palette.to_rgb(self._start_screen), self._ale.getScreenRGB()):
        raise RuntimeError(f'{game}: the palette lookup does not reproduce getScreenRGB')
    self._rng = np.random.default_rng(0)
    self._last_action = 0
    self._steps = 0

  @classmethod
  def from_config(cls, game: str, env: config_lib.EnvConfig) -> AtariEnv:
    """Builds the env of `game` from an `EnvConfig`, with frames as collectors store them
    (`stored_frame_shape`: palette indices at the native size, else resized RGB)."""
    return cls(game, frame_skip=env.frame_skip,
               repeat_action_probability=env.repeat_action_probability,
               max_episode_steps=env.max_episode_steps,
               frame_shape=(env.frame_height, env.frame_width), noop_max=env.noop_max,
               palette_frames=len(stored_frame_shape((env.frame_height, env.frame_width))) == 2)

  def _observe(self, screen: np.ndarray | None = None) -> Observation:
    self._ale.getRAM(self._ram)
    if not self.read_frames:
      return Observation(ram=self._ram.copy(), frame=_NO_FRAME)
    if screen is None and self.frame_shape == NATIVE_FRAME_SHAPE:
      frame = np.empty_like(self._screen)  # Read straight into the returned array: no copy.
      self._read_screen(frame)
      return Observation(ram=self._ram.copy(), frame=frame)
    if screen is None:
      self._read_screen(self._screen)
    frame = self._screen if screen is None else screen
    if self.frame_shape != NATIVE_FRAME_SHAPE:
      frame = _resize(frame, self.frame_shape)
    return Observation(ram=self._ram.copy(), frame=frame.copy())

  def reset(self, seed: int) -> Observation:
    """Starts a new episode whose randomness (no-op start, sticky actions) comes from `seed`."""
    self._ale.restoreState(self._start_state)
    self._rng = np.random.default_rng(seed)
    self._last_action = 0  # ALE's reset leaves NOOP as the previous action.
    noops = int(self._rng.integers(0, self.noop_max + 1)) if self.noop_max else 0
    self.last_noops = noops
    for _ in range(noops):
      for _ in range(self.frame_skip):
        self._ale.act(self._actions[0])
      if self._ale.game_over():
        break
    self._steps = 0
    return self._observe(self._start_screen if not noops else None)

  def step(self, action: int) -> StepResult:
    """Plays `action` (an index into the 18 actions) for `frame_skip` frames."""
    if not 0 <= action < NUM_ACTIONS:
      raise ValueError(f'action {action} outside [0, {NUM_ACTIONS})')
    reward = 0.0
    p = self.repeat_action_probability
    sticky = self._rng.random(self.frame_skip) < p if p > 0 else None
    for k in range(self.frame_skip):
      if sticky is None or not sticky[k]:
        self._last_action = action
      reward += self._ale.act(self._actions[self._last_action])
      if self._ale.game_over():
        break
    self._steps += 1
    terminal = self._ale.game_over()
    truncated = not terminal and self._steps >= self.max_episode_steps
    return StepResult(self._observe(), reward, terminal, truncated)
