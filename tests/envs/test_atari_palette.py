"""Palette-index frames rebuild ale-py's RGB screen bit for bit (numpy and inside jit)."""

import jax
import numpy as np
import pytest

from rmr_dist.envs import atari
from rmr_dist.envs import atari_palette

GAMES = ('pong', 'breakout', 'space_invaders', 'ms_pacman', 'montezuma_revenge', 'riverraid',
         'boxing', 'frostbite')


def _frames(game: str, frames: int, every: int, seed: int):
  """(palette indices [N, 210, 160], getScreenRGB [N, 210, 160, 3]) of a random-action run."""
  import ale_py
  from ale_py import roms
  ale = ale_py.ALEInterface()
  ale.setLoggerMode(ale_py.LoggerMode.Error)
  ale.setInt('random_seed', seed)
  ale.loadROM(roms.get_rom_path(game))
  actions = ale.getMinimalActionSet()
  rng = np.random.default_rng(seed)
  index, rgb = [], []
  for i in range(frames):
    ale.act(actions[rng.integers(len(actions))])
    if ale.game_over():
      ale.reset_game()
    if i % every == 0:
      index.append(ale.getScreen())
      rgb.append(ale.getScreenRGB())
  return np.stack(index), np.stack(rgb)


def test_palette_rebuilds_get_screen_rgb_bit_for_bit_over_games():
  seen = set()
  for game in GAMES:
    index, rgb = _frames(game, frames=1200, every=6, seed=3)  # 200 frames a game.
    assert index.shape == (200, 210, 160) and index.dtype == np.uint8
    np.testing.assert_array_equal(atari_palette.to_rgb(index), rgb, err_msg=game)
    seen |= set(np.unique(index).tolist())
  assert len(seen) >= 40  # Many palette entries exercised, not a handful.
  # Inside jit, on a batch, as the natural learner's step does it.
  index, rgb = _frames('ms_pacman', frames=60, every=20, seed=4)
  out = jax.jit(atari_palette.to_rgb_jnp)(index)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(np.asarray(out), rgb)


def test_palette_shape_and_rgb_pass_through():
  p = atari_palette.ale_palette()
  assert p.shape == (256, 3) and p.dtype == np.uint8
  rgb = np.zeros((2, 8, 8, 3), np.uint8)
  assert atari_palette.to_rgb(rgb) is rgb
  assert atari_palette.to_rgb_jnp(rgb).shape == (2, 8, 8, 3)


def test_env_palette_frames_equal_rgb_frames():
  kw = dict(frame_skip=4, repeat_action_probability=0.25, max_episode_steps=50, noop_max=5)
  env_p = atari.AtariEnv('breakout', palette_frames=True, **kw)
  env_r = atari.AtariEnv('breakout', **kw)
  obs_p, obs_r = env_p.reset(7), env_r.reset(7)
  assert obs_p.frame.shape == (210, 160) and obs_r.frame.shape == (210, 160, 3)
  np.testing.assert_array_equal(atari_palette.to_rgb(obs_p.frame), obs_r.frame)
  rng = np.random.default_rng(0)
  for _ in range(50):
    a = int(rng.integers(atari.NUM_ACTIONS))
    rp, rr = env_p.step(a), env_r.step(a)
    np.testing.assert_array_equal(atari_palette.to_rgb(rp.observation.frame), rr.observation.frame)
    np.testing.assert_array_equal(rp.observation.ram, rr.observation.ram)
    if rp.terminal or rp.truncated:
      break


def test_stored_frame_shape_and_palette_needs_native_size():
  assert atari.stored_frame_shape((210, 160)) == (210, 160)
  assert atari.stored_frame_shape((84, 64)) == (84, 64, 3)
  with pytest.raises(ValueError, match='palette_frames=True needs the native frame_shape'):
    atari.AtariEnv('pong', frame_shape=(84, 64), palette_frames=True)
