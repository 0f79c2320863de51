"""ALE palette-index frames and their exact RGB: `rgb = palette[index]`.

ALE renders a screen as palette indices ([210, 160] uint8, `ALEInterface.getScreen`) and
`getScreenRGB` maps each index through a 256-entry NTSC palette. Collectors store the indices
(33,600 bytes a frame instead of 100,800, and no RGB conversion on the emulator's core); the RGB
frame is rebuilt where it is consumed: `to_rgb` in numpy (probes, figures, episode reads),
`to_rgb_jnp` inside a jitted step (the natural learner), both a single gather.

The palette is the one compiled into the installed ale-py, read from its library: a short
deterministic Pong run gives (index, RGB) pairs, and the library holds exactly one run of 256
little-endian 0x00RRGGBB words that agrees with all of them (it fails loudly otherwise). So the
lookup matches `getScreenRGB` of this very ale-py, bit for bit (tests/envs/test_atari_palette.py
checks it over many frames of several games), and no colour table is copied into this repository.

Which frames are palette indices: frames at ALE's native size (`atari.NATIVE_FRAME_SHAPE`); a
config with smaller `env.frame_height/width` stores resized RGB frames as before (a resize mixes
colours, so it has no palette form). `is_palette` tells them apart by shape: RGB frames end in a
3-channel axis, palette frames in the 160-pixel width.
"""

from __future__ import annotations

import functools

import numpy as np

NUM_COLOURS = 256
_PROBE_GAME = 'pong'
_PROBE_FRAMES = 200  # Emulator frames whose (index, RGB) pairs locate the palette.
_MIN_PAIRS = 6  # Distinct colours the probe must see before its match is trusted.


def _observed_pairs() -> dict[int, tuple[int, int, int]]:
  """(palette index -> RGB) of the colours a short, fixed-action Pong run shows."""
  import ale_py  # pylint: disable=g-import-not-at-top
  from ale_py import roms  # pylint: disable=g-import-not-at-top
  ale = ale_py.ALEInterface()
  ale.setLoggerMode(ale_py.LoggerMode.Error)
  ale.setInt('random_seed', 0)
  ale.setFloat('repeat_action_probability', 0.0)
  ale.loadROM(roms.get_rom_path(_PROBE_GAME))
  actions = sorted(ale_py.Action, key=lambda a: a.value)
  pairs = {}
  for i in range(_PROBE_FRAMES):
    ale.act(actions[(7 * i) % len(actions)])
    if i % 10:
      continue
    index, rgb = ale.getScreen(), ale.getScreenRGB()  # [210, 160], [210, 160, 3]
    for value in np.unique(index):
      colours = rgb[index == value]  # [n, 3]
      if not (colours == colours[0]).all():
        raise RuntimeError(f'ale-py maps palette index {value} to several colours: the screen '
                           'is not a palette lookup (colour averaging on?)')
      pairs[int(value)] = tuple(int(c) for c in colours[0])
  return pairs


@functools.lru_cache(maxsize=1)
def ale_palette() -> np.ndarray:
  """The installed ale-py's NTSC palette: [256, 3] uint8, row i = RGB of palette index i.

  Raises:
    RuntimeError: the library does not hold exactly one palette agreeing with what ale-py
      renders (an ale-py this code was not checked against).
  """
  import ale_py  # pylint: disable=g-import-not-at-top
  from ale_py import _ale_py  # pylint: disable=g-import-not-at-top
  pairs = _observed_pairs()
  if len(pairs) < _MIN_PAIRS:
    raise RuntimeError(f'Only {len(pairs)} colours seen on {_PROBE_GAME}; cannot locate the '
                       'palette')
  words = {i: (r << 16) | (g << 8) | b for i, (r, g, b) in pairs.items()}
  anchor = max(words, key=lambda i: words[i])  # A non-black colour: few false hits.
  with open(_ale_py.__file__, 'rb') as f:
    blob = f.read()
  matches = []
  for offset in range(4):
    table = np.frombuffer(blob, np.uint32, (len(blob) - offset) // 4, offset)
    for hit in np.flatnonzero(table == words[anchor]):
      start = hit - anchor
      if start < 0 or start + NUM_COLOURS > len(table):
        continue
      candidate = table[start:start + NUM_COLOURS]
      if all(candidate[i] == w for i, w in words.items()):
        matches.append(candidate)
  distinct = {m.tobytes() for m in matches}
  if len(distinct) != 1:
    raise RuntimeError(f'Found {len(distinct)} palettes agreeing with ale-py {ale_py.__version__}'
                       f"'s rendering in {_ale_py.__file__}; expected exactly 1")
  words = matches[0].astype(np.uint32)  # [256] 0x00RRGGBB
  rgb = np.stack([(words >> 16) & 0xFF, (words >> 8) & 0xFF, words & 0xFF], axis=-1)
  out = rgb.astype(np.uint8)  # [256, 3]
  out.setflags(write=False)
  return out


def is_palette(frames: np.ndarray) -> bool:
  """Whether `frames` ([..., H, W] or [..., H, W, 3] uint8) are palette indices, not RGB."""
  return frames.shape[-1] != 3


def to_rgb(frames: np.ndarray) -> np.ndarray:
  """RGB of palette-index frames in numpy; RGB frames pass through unchanged.

  Args:
    frames: [..., H, W] uint8 palette indices, or [..., H, W, 3] uint8 RGB.

  Returns:
    [..., H, W, 3] uint8.
  """
  frames = np.asarray(frames)
  return ale_palette()[frames] if is_palette(frames) else frames


def to_rgb_jnp(frames):
  """`to_rgb` for jax arrays, inside jit (one gather from a [256, 3] constant).

  Args:
    frames: [..., H, W] uint8 palette indices, or [..., H, W, 3] uint8 RGB.

  Returns:
    [..., H, W, 3] uint8 jax array.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  frames = jnp.asarray(frames)
  if not is_palette(frames):
    return frames
  return jnp.asarray(ale_palette())[frames.astype(jnp.int32)]
