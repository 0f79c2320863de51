"""Bouncing balls (paper section 3, Appendix A): MuJoCo trajectories and their 64x64 videos.

N balls bounce elastically off each other and the four walls of a square box, seen from above,
with no gravity and no friction. The box is 1 m on a side with its lower-left corner at the
origin, so MuJoCo's metres are already the normalised units everything else sees: positions in
[0, 1]^2 (x right, y up), velocities in box sides per second, radii as a fraction of the side.

Physics: one MJCF model per set of radii; each ball is a body with two slide joints (x, y), so it
stays in the plane z = 0 and never rotates, and a sphere geom. Every ball has the same mass (1 kg,
whatever its radius), so a head-on collision of two balls swaps their velocities. Contacts are
frictionless (condim 1) and use MuJoCo's "direct" reference acceleration with zero damping
(solref = (-stiffness, 0)) and a constant impedance d: an isolated contact is an undamped spring
(relative acceleration = -stiffness * overlap), which semi-implicit Euler integrates almost without
loss. d is small (0.01) so that the solver's regulariser dominates its contact coupling and
simultaneous contacts (a ball pressed between a wall and another ball) also act as independent
springs; with d near 1 such events lose or gain several percent of their energy. `_STIFFNESS`
makes a contact last ~14 physics steps at the default `physics_dt` and keeps the deepest overlap at
the default speeds near 0.5% of the box side (a third of a pixel at 64x64). Measured at the
defaults: a wall bounce changes the speed by < 0.1%, and the kinetic energy of 10 balls drifts by
< 1% over 300 frames (15 s, ~200 collisions).

Rendering: `render_frames` is a numpy rasteriser (anti-aliased discs, thousands of frames/s) used
to make the videos; `MujocoRenderer` renders the same scene with MuJoCo's OpenGL renderer through an
orthographic top-down camera and flat unlit colours, and serves to check the rasteriser.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

try:
  import mujoco
except (AttributeError, ImportError) as e:  # How PyOpenGL fails when MUJOCO_GL's library is absent.
  raise ImportError(
      f'importing mujoco failed with MUJOCO_GL={os.environ.get("MUJOCO_GL")!r}: the OpenGL library '
      'for that backend is probably missing (MUJOCO_GL=egl needs Debian packages libegl1 '
      'libegl-mesa0, MUJOCO_GL=osmesa needs libosmesa6); install it or unset MUJOCO_GL') from e

BALL_COLOURS = np.array([
    [255, 0, 0],  # Red.
    [0, 255, 0],  # Green.
    [0, 0, 255],  # Blue.
    [255, 255, 0],  # Yellow.
    [255, 0, 255],  # Magenta.
    [0, 255, 255],  # Cyan.
    [255, 128, 0],  # Orange.
    [128, 0, 255],  # Violet.
    [0, 255, 128],  # Spring green.
    [255, 0, 128],  # Rose.
], np.uint8)  # [10, 3]; ball i uses BALL_COLOURS[i % 10], the background is black.

_BALL_MASS = 1.0  # kg, the same for every ball.
_STIFFNESS = 5e4  # Contact stiffness in acceleration units (1/s^2): omega = sqrt(k) ~ 224 rad/s.
_IMPEDANCE = 0.01  # Constant solimp d; small, so simultaneous contacts act as independent springs.
_OVERLAP_TOL = 0.02  # Overlap (box sides) that `simulate` accepts: mid-contact frames overlap.
_MAX_AREA_FRACTION = 0.35  # Most of the box that N balls of the largest radius may cover.
_PLACEMENT_CANDIDATES = 256  # Candidate positions drawn at once per ball in `episode`.
_PLACEMENT_RESTARTS = 200  # Fresh starts of the sequential placement before giving up.
_WALL_GAP = 1e-3  # Sampled balls start at least this far (box sides) from every wall.


@dataclasses.dataclass(frozen=True)
class BallsEpisode:
  """One simulated trajectory, normalised to the box.

  Attributes:
    positions: [T, N, 2] float32 ball centres in [0, 1]^2 (x right, y up).
    velocities: [T, N, 2] float32 in box sides per second.
    radii: [N] float32, fraction of the box side.
  """
  positions: np.ndarray
  velocities: np.ndarray
  radii: np.ndarray


def _ball_rgba(i: int) -> str:
  r, g, b = BALL_COLOURS[i % len(BALL_COLOURS)] / 255.0
  return f'{r:.6g} {g:.6g} {b:.6g} 1'


def _model_xml(radii: np.ndarray, physics_dt: float) -> str:
  """MJCF for balls of these radii in the unit box, with a top-down orthographic camera."""
  contact = (f'condim="1" solref="{-_STIFFNESS:.6g} 0" '
             f'solimp="{_IMPEDANCE} {_IMPEDANCE} 0.001 0.5 2"')
  balls = '\n'.join(
      f'    <body name="ball{i}" pos="0 0 0">\n'
      f'      <joint name="x{i}" type="slide" axis="1 0 0"/>\n'
      f'      <joint name="y{i}" type="slide" axis="0 1 0"/>\n'
      f'      <geom name="ball{i}" type="sphere" size="{r:.9g}" mass="{_BALL_MASS}" '
      f'material="colour{i % len(BALL_COLOURS)}" {contact}/>\n'
      f'    </body>' for i, r in enumerate(radii))
  materials = '\n'.join(
      f'    <material name="colour{i}" rgba="{_ball_rgba(i)}" emission="1" specular="0" '
      f'shininess="0" reflectance="0"/>' for i in range(len(BALL_COLOURS)))
  # Walls are 1 m thick slabs whose inner faces are the box sides x = 0, x = 1, y = 0, y = 1.
  walls = '\n'.join(
      f'    <geom name="wall_{name}" type="box" pos="{x} {y} 0" size="{sx} {sy} 1" '
      f'material="black" {contact}/>'
      for name, x, y, sx, sy in (('left', -0.5, 0.5, 0.5, 1.5), ('right', 1.5, 0.5, 0.5, 1.5),
                                 ('bottom', 0.5, -0.5, 1.5, 0.5), ('top', 0.5, 1.5, 1.5, 0.5)))
  return f"""
<mujoco model="bouncing_balls">
  <option timestep="{physics_dt:.9g}" gravity="0 0 0" integrator="Euler"/>
  <statistic extent="1" center="0.5 0.5 0"/>
  <visual>
    <quality shadowsize="0" offsamples="16" numslices="128" numstacks="64"/>
    <headlight active="0" ambient="0 0 0" diffuse="0 0 0" specular="0 0 0"/>
    <map znear="0.01" zfar="10"/>
    <rgba haze="0 0 0 1" fog="0 0 0 1"/>
  </visual>
  <asset>
    <material name="black" rgba="0 0 0 1" emission="0" specular="0" shininess="0" reflectance="0"/>
{materials}
  </asset>
  <worldbody>
    <geom name="floor" type="plane" pos="0.5 0.5 -1" size="2 2 0.1" material="black"
          contype="0" conaffinity="0"/>
{walls}
    <camera name="top" pos="0.5 0.5 2" projection="orthographic" fovy="1"/>
{balls}
  </worldbody>
</mujoco>
"""


def _check_state(positions: np.ndarray, velocities: np.ndarray, radii: np.ndarray,
                 num_balls: int, tol: float = _OVERLAP_TOL) -> None:
  """Raises ValueError unless (positions, velocities, radii) is a state of balls in the box.

  Balls may overlap each other or the walls by up to `tol` box sides, as they do mid-contact, so
  that any frame of a simulated episode is a valid initial state.
  """
  if radii.ndim != 1 or radii.size == 0:
    raise ValueError(f'radii must have shape [N] with N >= 1, got {radii.shape}')
  n = radii.shape[0]
  if n != num_balls:
    raise ValueError(f'got {n} radii, but this simulator has num_balls={num_balls}')
  if positions.shape != (n, 2):
    raise ValueError(f'positions must have shape [{n}, 2], got {positions.shape}')
  if velocities.shape != (n, 2):
    raise ValueError(f'velocities must have shape [{n}, 2], got {velocities.shape}')
  for name, a in (('positions', positions), ('velocities', velocities), ('radii', radii)):
    if not np.all(np.isfinite(a)):
      raise ValueError(f'{name} must be finite, got {a}')
  if not np.all((radii > 0) & (radii < 0.5)):
    raise ValueError(f'radii must lie in (0, 0.5) box sides, got {radii}')
  if np.any(positions - radii[:, None] < -tol) or np.any(positions + radii[:, None] > 1 + tol):
    raise ValueError(f'balls must lie inside the unit box (radius <= position <= 1 - radius, '
                     f'to within {tol}), got positions {positions} with radii {radii}')
  gaps = (np.linalg.norm(positions[:, None] - positions[None], axis=-1) -
          (radii[:, None] + radii[None]))  # [N, N]
  np.fill_diagonal(gaps, np.inf)
  if np.any(gaps < -tol):
    i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
    raise ValueError(f'balls {i} and {j} overlap by {-gaps[i, j]:.3g} box sides (more than {tol}) '
                     f'at positions {positions[i]} and {positions[j]}')


class BallsSimulator:
  """Simulates N balls in the unit box with MuJoCo.

  Args:
    num_balls: N, the number of balls.
    radius_range: (low, high) of the uniform distribution of radii in `episode`, in box sides.
    speed_range: (low, high) of the uniform distribution of initial speeds in `episode`, in box
      sides per second.
    frame_dt: seconds between returned frames.
    physics_dt: MuJoCo time step; `frame_dt` must be a whole multiple of it.
  """

  def __init__(self, *, num_balls: int = 10, radius_range: tuple[float, float] = (0.05, 0.05),
               speed_range: tuple[float, float] = (0.3, 0.6), frame_dt: float = 0.05,
               physics_dt: float = 0.001):
    if not isinstance(num_balls, (int, np.integer)) or num_balls < 1:
      raise ValueError(f'num_balls must be a positive integer, got {num_balls!r}')
    r_lo, r_hi = radius_range
    if not 0 < r_lo <= r_hi < 0.5:
      raise ValueError(f'radius_range must satisfy 0 < low <= high < 0.5 box sides, got '
                       f'{radius_range}')
    area = num_balls * np.pi * r_hi**2
    if area > _MAX_AREA_FRACTION:
      max_r = np.sqrt(_MAX_AREA_FRACTION / (np.pi * num_balls))
      raise ValueError(
          f'{num_balls} balls of radius up to {r_hi} cover {area:.2f} of the box, more than the '
          f'{_MAX_AREA_FRACTION} that random placement can fit; use radius <= {max_r:.4f} or '
          f'fewer balls')
    s_lo, s_hi = speed_range
    if not 0 <= s_lo <= s_hi:
      raise ValueError(f'speed_range must satisfy 0 <= low <= high, got {speed_range}')
    if not physics_dt > 0:
      raise ValueError(f'physics_dt must be positive, got {physics_dt}')
    substeps = round(frame_dt / physics_dt)
    if substeps < 1 or abs(substeps * physics_dt - frame_dt) > 1e-9 * max(1.0, frame_dt):
      raise ValueError(f'frame_dt={frame_dt} must be a positive whole multiple of '
                       f'physics_dt={physics_dt}')
    self.num_balls = int(num_balls)
    self.radius_range = (float(r_lo), float(r_hi))
    self.speed_range = (float(s_lo), float(s_hi))
    self.frame_dt = float(frame_dt)
    self.physics_dt = float(physics_dt)
    self._substeps = substeps
    self._cached_radii: tuple[float, ...] | None = None
    self._model: mujoco.MjModel | None = None
    self._data: mujoco.MjData | None = None

  def _model_and_data(self, radii: np.ndarray) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """The (cached) model for these radii; rebuilt only when the radii change."""
    key = tuple(float(r) for r in radii)
    if key != self._cached_radii:
      self._model = mujoco.MjModel.from_xml_string(_model_xml(radii, self.physics_dt))
      self._data = mujoco.MjData(self._model)
      self._cached_radii = key
    return self._model, self._data

  def simulate(self, positions: np.ndarray, velocities: np.ndarray, radii: np.ndarray,
               num_frames: int) -> BallsEpisode:
    """Simulates from an explicit initial state.

    Args:
      positions: [N, 2] initial ball centres in the box, N == num_balls; balls may overlap each
        other or the walls by at most 0.02 box sides (as mid-contact frames do).
      velocities: [N, 2] initial velocities, box sides per second.
      radii: [N] radii, box sides (need not lie in `radius_range`).
      num_frames: T >= 1 frames to return; frame 0 is the initial state.

    Returns:
      The episode: T states `frame_dt` apart.
    """
    positions = np.asarray(positions, np.float64)
    velocities = np.asarray(velocities, np.float64)
    radii = np.asarray(radii, np.float64)
    _check_state(positions, velocities, radii, self.num_balls)
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
      raise ValueError(f'num_frames must be a positive integer, got {num_frames!r}')
    model, data = self._model_and_data(radii)
    mujoco.mj_resetData(model, data)
    data.qpos[:] = positions.reshape(-1)  # Joints are (x0, y0, x1, y1, ...).
    data.qvel[:] = velocities.reshape(-1)
    mujoco.mj_forward(model, data)
    n = self.num_balls
    out_pos = np.empty((num_frames, n, 2), np.float32)  # [T, N, 2]
    out_vel = np.empty((num_frames, n, 2), np.float32)  # [T, N, 2]
    out_pos[0], out_vel[0] = positions, velocities
    for t in range(1, num_frames):
      mujoco.mj_step(model, data, nstep=self._substeps)
      out_pos[t] = data.qpos.reshape(n, 2)
      out_vel[t] = data.qvel.reshape(n, 2)
    return BallsEpisode(positions=out_pos, velocities=out_vel, radii=radii.astype(np.float32))

  def initial_state(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random initial state, a pure function of `seed`.

    Radii are uniform in `radius_range`; positions uniform over the box, rejected where a ball
    would overlap an earlier one or come within `_WALL_GAP` of a wall; velocity directions uniform
    and speeds uniform in `speed_range`.

    Returns:
      positions [N, 2], velocities [N, 2], radii [N], all float64.
    """
    rng = np.random.default_rng(seed)
    n = self.num_balls
    radii = rng.uniform(*self.radius_range, size=n)  # [N]
    positions = np.empty((n, 2))  # [N, 2]
    for _ in range(_PLACEMENT_RESTARTS):
      placed = 0
      while placed < n:
        r = radii[placed]
        cand = rng.uniform(r + _WALL_GAP, 1 - r - _WALL_GAP, size=(_PLACEMENT_CANDIDATES, 2))
        gaps = (np.linalg.norm(cand[:, None] - positions[None, :placed], axis=-1) -
                (r + radii[None, :placed]))  # [C, placed]
        ok = np.flatnonzero(np.all(gaps > 0, axis=1))
        if ok.size == 0:
          break
        positions[placed] = cand[ok[0]]
        placed += 1
      if placed == n:
        break
    else:
      raise RuntimeError(f'could not place {n} balls with radii {radii} without overlap after '
                         f'{_PLACEMENT_RESTARTS} attempts (seed {seed})')
    angle = rng.uniform(0, 2 * np.pi, size=n)
    speed = rng.uniform(*self.speed_range, size=n)
    velocities = speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)  # [N, 2]
    return positions, velocities, radii

  def episode(self, seed: int, num_frames: int) -> BallsEpisode:
    """Simulates `num_frames` frames from the random initial state of `seed` (see initial_state)."""
    return self.simulate(*self.initial_state(seed), num_frames)


def render_frames(positions: np.ndarray, radii: np.ndarray, image_size: int = 64) -> np.ndarray:
  """Rasterises balls seen from above: anti-aliased discs on black, later balls on top.

  A pixel's coverage by a ball is clip(0.5 - d, 0, 1) where d is the signed distance in pixels
  from the pixel centre to the ball's edge. Row 0 is the top of the box (y = 1), column 0 its left
  side (x = 0); pixel (i, j) has centre ((j + 0.5) / W, 1 - (i + 0.5) / H). Each ball is drawn
  only into a small patch of pixels around it, so the cost grows with T * N * (ball diameter in
  pixels)^2, not with the image area.

  Args:
    positions: [T, N, 2] or [N, 2] ball centres in box units.
    radii: [N] radii in box sides.
    image_size: H = W in pixels.

  Returns:
    [T, H, W, 3] (or [H, W, 3]) uint8 RGB frames.
  """
  positions = np.asarray(positions, np.float32)
  radii = np.asarray(radii, np.float32)
  single = positions.ndim == 2
  if single:
    positions = positions[None]
  if positions.ndim != 3 or positions.shape[-1] != 2:
    raise ValueError(f'positions must have shape [T, N, 2] or [N, 2], got {positions.shape}')
  if radii.shape != (positions.shape[1],):
    raise ValueError(f'radii must have shape [{positions.shape[1]}], got {radii.shape}')
  if image_size < 1:
    raise ValueError(f'image_size must be positive, got {image_size}')
  s = image_size
  t = positions.shape[0]
  px = positions[..., 0] * s  # [T, N] x in pixels from the left edge.
  py = (1 - positions[..., 1]) * s  # [T, N] y in pixels from the top edge.
  # Each ball is drawn into a square patch of P pixels around it, on a canvas padded by the
  # largest P on every side so that patches never need clipping; the padding is cropped at the end.
  patch = np.ceil(2 * radii * s).astype(np.int64) + 3  # [N] patch side P per ball.
  pad = int(patch.max())
  side = s + 2 * pad
  canvas = np.zeros((t * side * side, 3), np.float32)  # [T * (S + 2 pad)^2, 3]
  frame_offset = (np.arange(t) * side * side)[:, None, None]  # [T, 1, 1]
  for i in range(positions.shape[1]):
    p_i = np.arange(patch[i])  # [P]
    rad = radii[i] * s
    row0 = np.clip(np.floor(py[:, i] - rad).astype(np.int64) - 1, -pad, s)  # [T]
    col0 = np.clip(np.floor(px[:, i] - rad).astype(np.int64) - 1, -pad, s)  # [T]
    rows = row0[:, None] + p_i  # [T, P] image rows.
    cols = col0[:, None] + p_i  # [T, P] image columns.
    dy2 = np.square(rows + np.float32(0.5) - py[:, i, None])  # [T, P]
    dx2 = np.square(cols + np.float32(0.5) - px[:, i, None])  # [T, P]
    dist = np.sqrt(dy2[:, :, None] + dx2[:, None, :])  # [T, P, P]
    alpha = np.clip(np.float32(0.5) + rad - dist, 0, 1)[..., None]  # [T, P, P, 1]
    index = frame_offset + (rows[:, :, None] + pad) * side + (cols[:, None, :] + pad)  # [T, P, P]
    colour = BALL_COLOURS[i % len(BALL_COLOURS)].astype(np.float32)  # [3]
    under = canvas[index]  # [T, P, P, 3]
    canvas[index] = under + alpha * (colour - under)
  image = canvas.reshape(t, side, side, 3)[:, pad:pad + s, pad:pad + s]  # [T, H, W, 3]
  out = np.rint(image).astype(np.uint8)
  return out[0] if single else out


def render_segmentation(positions: np.ndarray, radii: np.ndarray,
                        image_size: int = 64) -> np.ndarray:
  """Which ball each pixel shows, as `render_frames` draws it: 0 background, i + 1 ball i.

  A pixel belongs to a ball when its centre lies inside the disc (coverage >= 0.5 in
  `render_frames`); where discs overlap the later ball is on top, as in the frames.

  Args:
    positions: [T, N, 2] or [N, 2] ball centres in box units.
    radii: [N] radii in box sides.
    image_size: H = W in pixels.

  Returns:
    [T, H, W] (or [H, W]) int32 object ids.
  """
  positions = np.asarray(positions, np.float32)
  single = positions.ndim == 2
  if single:
    positions = positions[None]
  s = image_size
  centres = (np.arange(s, dtype=np.float32) + 0.5)  # [S] pixel centres
  seg = np.zeros((positions.shape[0], s, s), np.int32)  # [T, H, W]
  for i, radius in enumerate(np.asarray(radii, np.float32)):
    px = positions[:, i, 0] * s  # [T]
    py = (1 - positions[:, i, 1]) * s  # [T]
    inside = (np.square(centres[None, :, None] - py[:, None, None]) +
              np.square(centres[None, None, :] - px[:, None, None])) <= (radius * s) ** 2
    seg[inside] = i + 1
  return seg[0] if single else seg


class MujocoRenderer:
  """MuJoCo's OpenGL render of the simulator's scene, for checking `render_frames`.

  Needs an OpenGL backend, chosen by the MUJOCO_GL environment variable before mujoco is first
  imported: 'egl' (Debian packages libegl1 libegl-mesa0) or 'osmesa' (libosmesa6) work headless.
  Edges are anti-aliased by multisampling: the model asks for 16 samples, but Mesa's software
  rasteriser gives 4, so edge pixels take only the values 0, 1/4, 1/2, 3/4, 1 of a ball's colour.

  Args:
    radii: [N] radii in box sides.
    image_size: H = W in pixels.
  """

  def __init__(self, radii: np.ndarray, image_size: int = 64):
    radii = np.asarray(radii, np.float64)
    if radii.ndim != 1 or radii.size == 0 or not np.all((radii > 0) & (radii < 0.5)):
      raise ValueError(f'radii must have shape [N], N >= 1, in (0, 0.5), got {radii}')
    self._model = mujoco.MjModel.from_xml_string(_model_xml(radii, 0.001))
    self._model.vis.global_.offwidth = max(self._model.vis.global_.offwidth, image_size)
    self._model.vis.global_.offheight = max(self._model.vis.global_.offheight, image_size)
    self._data = mujoco.MjData(self._model)
    self._num_balls = radii.shape[0]
    try:
      self._renderer = mujoco.Renderer(self._model, image_size, image_size)
    except Exception as e:  # pylint: disable=broad-except
      raise RuntimeError(
          'MuJoCo could not create an OpenGL context for rendering; set MUJOCO_GL=egl (Debian '
          'packages libegl1 libegl-mesa0) or MUJOCO_GL=osmesa (libosmesa6) before mujoco is '
          f'first imported (MUJOCO_GL={os.environ.get("MUJOCO_GL")!r}): {e}') from e
    flags = self._renderer.scene.flags
    for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                 mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_FOG,
                 mujoco.mjtRndFlag.mjRND_HAZE):
      flags[flag] = False
    self._camera = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, 'top')

  def render(self, positions: np.ndarray) -> np.ndarray:
    """Renders balls at `positions` [N, 2] (box units) to [H, W, 3] uint8."""
    positions = np.asarray(positions, np.float64)
    if positions.shape != (self._num_balls, 2):
      raise ValueError(f'positions must have shape [{self._num_balls}, 2], got {positions.shape}')
    self._data.qpos[:] = positions.reshape(-1)
    mujoco.mj_kinematics(self._model, self._data)
    mujoco.mj_camlight(self._model, self._data)  # The camera's pose; mj_kinematics skips it.
    self._renderer.update_scene(self._data, camera=self._camera)
    return self._renderer.render()

  def close(self) -> None:
    """Frees the OpenGL context; `render` may not be called afterwards."""
    if getattr(self, '_renderer', None) is not None:
      self._renderer.close()
      self._renderer = None
