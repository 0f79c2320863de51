"""Tests for rmr_dist.envs.balls: real MuJoCo physics, the numpy rasteriser, MuJoCo's renderer.

MUJOCO_GL is read when mujoco is first imported; tests/conftest.py sets it to 'egl' for the whole
session where libEGL exists. Without a GL backend the MuJoCo render test skips (fails under CI).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from rmr_dist.envs import balls

_Y, _X = np.mgrid[0:64, 0:64] + 0.5  # [64, 64] pixel-centre coordinates in pixels.


def _gaps(positions: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Smallest ball-ball and ball-wall gaps per frame (negative: overlap). Shapes [T], [T]."""
  p = positions.astype(np.float64)  # [T, N, 2]
  r = radii.astype(np.float64)  # [N]
  n = r.shape[0]
  pair = np.linalg.norm(p[:, :, None] - p[:, None], axis=-1) - (r[:, None] + r[None])  # [T, N, N]
  pair[:, np.arange(n), np.arange(n)] = np.inf
  wall = np.minimum(p - r[:, None], 1 - r[:, None] - p)  # [T, N, 2]
  return pair.min(axis=(1, 2)), wall.min(axis=(1, 2))


def _kinetic_energy(velocities: np.ndarray) -> np.ndarray:
  """[T, N, 2] -> [T] total kinetic energy of unit-mass balls."""
  return 0.5 * np.sum(velocities.astype(np.float64)**2, axis=(1, 2))


def test_random_episode_stays_in_box_and_conserves_energy():
  """10 balls, 300 frames (15 s, ~200 collisions).

  Tolerances: a wall penetration or ball overlap of at most 0.01 box sides (measured <= 0.0062
  over seeds 0-29); kinetic energy on contact-free frames (mid-contact frames hold energy in the
  contact spring) within 2% of its initial value (measured <= 0.84%, median 0.26%, over seeds
  0-29).
  """
  sim = balls.BallsSimulator()
  ep = sim.episode(seed=0, num_frames=300)
  assert ep.positions.shape == (300, 10, 2) and ep.positions.dtype == np.float32
  assert ep.velocities.shape == (300, 10, 2) and ep.velocities.dtype == np.float32
  assert ep.radii.shape == (10,) and ep.radii.dtype == np.float32
  pair_gap, wall_gap = _gaps(ep.positions, ep.radii)
  assert wall_gap.min() >= -0.01
  assert pair_gap.min() >= -0.01
  assert np.all((ep.positions >= 0) & (ep.positions <= 1))
  contact_free = (pair_gap > 0) & (wall_gap > 0)
  assert contact_free.mean() > 0.5
  energy = _kinetic_energy(ep.velocities)
  np.testing.assert_allclose(energy[contact_free], energy[0], rtol=0.02)
  # Balls really move and collide: every ball's velocity changes direction at some point.
  turned = np.einsum('tnd,nd->tn', ep.velocities, ep.velocities[0]) < 0  # [T, N]
  assert turned.any(axis=0).all()


def test_head_on_collision_swaps_velocities():
  """Equal balls, A at 0.5 box/s hits B at rest: A stops and B leaves at 0.5 (tolerance 1% of v;
  measured 0.03%); momentum and energy conserved to 0.5% (measured < 0.05%)."""
  v = 0.5
  sim = balls.BallsSimulator(num_balls=2)
  ep = sim.simulate(positions=[[0.3, 0.5], [0.6, 0.5]], velocities=[[v, 0.0], [0.0, 0.0]],
                    radii=[0.05, 0.05], num_frames=13)
  # Contact at t = 0.4 s (frame 8); at frame 12 (t = 0.6 s) B is still 0.15 from the wall.
  after = ep.velocities[-1].astype(np.float64)  # [2, 2]
  np.testing.assert_allclose(after[0], [0.0, 0.0], atol=0.01 * v)
  np.testing.assert_allclose(after[1], [v, 0.0], atol=0.01 * v)
  np.testing.assert_allclose(after.sum(axis=0), [v, 0.0], atol=0.005 * v)
  np.testing.assert_allclose(_kinetic_energy(ep.velocities[-1:])[0], 0.5 * v**2, rtol=0.005)
  # Before contact nothing changes, and the balls stay on their line.
  np.testing.assert_allclose(ep.velocities[:7, 0], [[v, 0.0]] * 7, atol=1e-6)
  np.testing.assert_allclose(ep.positions[:, :, 1], 0.5, atol=1e-6)


def test_oblique_collision_is_elastic():
  """A hits B at rest off-centre (impact parameter = one radius).

  For equal masses an elastic collision leaves the two velocities perpendicular with B moving along
  the line of centres at contact. Tolerances: momentum and energy to 0.5% (measured < 0.05%);
  velocities perpendicular to cos < 0.01 (measured ~0.002); within 3% of the hard-sphere answer
  (measured 1.5%: the soft contact lasts ~14 ms, during which the line of centres turns a little).
  """
  v, r, b = 0.5, 0.05, 0.05
  sim = balls.BallsSimulator(num_balls=2)
  ep = sim.simulate(positions=[[0.3, 0.5 - b], [0.6, 0.5]], velocities=[[v, 0.0], [0.0, 0.0]],
                    radii=[r, r], num_frames=13)
  after = ep.velocities[-1].astype(np.float64)  # [2, 2]
  np.testing.assert_allclose(after.sum(axis=0), [v, 0.0], atol=0.005 * v)
  np.testing.assert_allclose(_kinetic_energy(ep.velocities[-1:])[0], 0.5 * v**2, rtol=0.005)
  cos = after[0] @ after[1] / np.linalg.norm(after[0]) / np.linalg.norm(after[1])
  assert abs(cos) < 0.01
  normal = np.array([np.sqrt((2 * r)**2 - b**2), b]) / (2 * r)  # A to B at contact.
  expected_b = v * normal[0] * normal
  expected = np.stack([[v, 0.0] - expected_b, expected_b])
  np.testing.assert_allclose(after, expected, atol=0.03 * v)


def test_episode_is_deterministic_per_seed_and_starts_without_overlap():
  sim = balls.BallsSimulator(radius_range=(0.04, 0.08))
  a = sim.episode(seed=7, num_frames=20)
  b = balls.BallsSimulator(radius_range=(0.04, 0.08)).episode(seed=7, num_frames=20)
  c = sim.episode(seed=8, num_frames=20)
  for field in ('positions', 'velocities', 'radii'):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert not np.allclose(a.positions[0], c.positions[0])
  for seed in range(20):
    ep = sim.episode(seed=seed, num_frames=1)
    pair_gap, wall_gap = _gaps(ep.positions, ep.radii)
    assert pair_gap[0] > 0 and wall_gap[0] > 0
    assert np.all((ep.radii >= 0.04) & (ep.radii <= 0.08))
    speed = np.linalg.norm(ep.velocities[0], axis=-1)
    assert np.all((speed >= 0.3 - 1e-6) & (speed <= 0.6 + 1e-6))


def test_render_frames_puts_each_ball_where_its_position_says():
  """Each ball's colour-weighted pixel centroid lies within 0.1 px of its position (measured
  <= 0.03 px) and its summed coverage is pi r^2 to 3% (measured <= 1.9%)."""
  rng = np.random.default_rng(0)
  grid = np.stack(np.meshgrid([0.15, 0.38, 0.62, 0.85], [0.15, 0.5, 0.85]), -1).reshape(-1, 2)
  positions = grid[:10] + rng.uniform(-0.03, 0.03, size=(2, 10, 2))  # [T=2, 10, 2], far apart.
  radii = rng.uniform(0.04, 0.1, size=10)
  frames = balls.render_frames(positions, radii)
  assert frames.shape == (2, 64, 64, 3) and frames.dtype == np.uint8
  np.testing.assert_array_equal(balls.render_frames(positions[1], radii), frames[1])
  for t in range(2):
    image = frames[t].astype(np.float64)  # [64, 64, 3]
    for i in range(10):
      colour = balls.BALL_COLOURS[i].astype(np.float64)
      projection = image @ colour  # [64, 64]
      same_hue = projection > 0.999 * np.linalg.norm(image, axis=-1) * np.linalg.norm(colour)
      coverage = np.where(same_hue, projection / (colour @ colour), 0.0)  # [64, 64]
      x = (coverage * _X).sum() / coverage.sum() / 64
      y = 1 - (coverage * _Y).sum() / coverage.sum() / 64  # Row 0 is the top, y = 1.
      np.testing.assert_allclose([x, y], positions[t, i], atol=0.1 / 64)
      np.testing.assert_allclose(coverage.sum(), np.pi * (radii[i] * 64)**2, rtol=0.03)


def test_render_frames_draws_later_balls_on_top_on_black():
  positions = np.array([[0.5, 0.5], [0.5, 0.5]])
  image = balls.render_frames(positions, np.array([0.2, 0.1]))
  np.testing.assert_array_equal(image[32, 32], balls.BALL_COLOURS[1])  # Ball 1 over ball 0.
  np.testing.assert_array_equal(image[32, 32 + 10], balls.BALL_COLOURS[0])  # Ball 0's ring.
  np.testing.assert_array_equal(image[0, 0], [0, 0, 0])
  assert balls.BALL_COLOURS.shape == (10, 3) and balls.BALL_COLOURS.dtype == np.uint8
  assert len({tuple(c) for c in balls.BALL_COLOURS}) == 10


def test_mujoco_render_matches_rasteriser():
  """MuJoCo's orthographic render of 3 random states of 10 balls (radii 0.03-0.1) vs
  render_frames.

  Tolerances: mean absolute difference (0-255 scale, over pixels and channels) < 2.5 (measured
  <= 1.72 over 18 states), and fewer than 0.5% of pixels differ by more than 64 in some channel
  (measured <= 0.07%). Most differences are edge pixels: Mesa's 4x multisampling quantises
  coverage to quarters. For scale, shifting the rasteriser by a quarter pixel gives 1.5% such
  pixels and a half pixel 3.8% (mean 3.7).
  """
  ep = balls.BallsSimulator(radius_range=(0.03, 0.1)).episode(seed=0, num_frames=40)
  try:
    renderer = balls.MujocoRenderer(ep.radii)
  except RuntimeError as e:
    if os.environ.get('CI') == 'true':
      pytest.fail(f'CI must have an OpenGL backend: {e}')
    pytest.skip(f'no OpenGL backend: {e}')
  try:
    for t in (0, 20, 39):
      mujoco_image = renderer.render(ep.positions[t])
      assert mujoco_image.shape == (64, 64, 3) and mujoco_image.dtype == np.uint8
      diff = np.abs(mujoco_image.astype(int) - balls.render_frames(ep.positions[t], ep.radii))
      assert diff.mean() < 2.5
      assert (diff.max(axis=-1) > 64).mean() < 0.005
  finally:
    renderer.close()


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_balls=0), 'num_balls must be a positive integer, got 0'),
    (dict(radius_range=(0.08, 0.05)), r'radius_range .* got \(0.08, 0.05\)'),
    (dict(radius_range=(0.2, 0.2)), '10 balls of radius up to 0.2 cover'),
    (dict(speed_range=(-1.0, 0.5)), r'speed_range .* got \(-1.0, 0.5\)'),
    (dict(frame_dt=0.0505), 'frame_dt=0.0505 must be a positive whole multiple of physics_dt'),
    (dict(physics_dt=0.0), 'physics_dt must be positive, got 0.0'),
])
def test_simulator_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    balls.BallsSimulator(**kwargs)


def test_simulate_rejects_bad_states():
  sim = balls.BallsSimulator(num_balls=2)
  v = np.zeros((2, 2))
  r = np.array([0.05, 0.05])
  with pytest.raises(ValueError, match='balls 0 and 1 overlap by 0.05'):
    sim.simulate(np.array([[0.5, 0.5], [0.55, 0.5]]), v, r, 3)
  with pytest.raises(ValueError, match='inside the unit box'):
    sim.simulate(np.array([[0.01, 0.5], [0.5, 0.5]]), v, r, 3)
  with pytest.raises(ValueError, match='num_balls=2'):
    sim.simulate(np.full((3, 2), 0.5), np.zeros((3, 2)), np.full(3, 0.05), 3)
  with pytest.raises(ValueError, match='num_frames must be a positive integer, got 0'):
    sim.simulate(np.array([[0.2, 0.5], [0.5, 0.5]]), v, r, 0)


def test_segmentation_matches_the_frames():
  """Pixels the segmentation gives to a ball are that ball's colour in the rendered frame."""
  positions = np.array([[0.3, 0.3], [0.7, 0.6], [0.72, 0.62]], np.float32)  # 2 and 3 overlap
  radii = np.array([0.08, 0.1, 0.06], np.float32)
  frame = balls.render_frames(positions, radii, 64).astype(int)
  seg = balls.render_segmentation(positions, radii, 64)
  assert set(np.unique(seg)) == {0, 1, 2, 3}
  assert frame[seg == 0].mean() < 10  # background is black but for the discs' blended edges
  for i in range(3):
    colour = balls.BALL_COLOURS[i].astype(int)
    pixels = frame[seg == i + 1]
    assert np.abs(pixels - colour).max(axis=-1).mean() < 40  # edge pixels are blended
  # Ball 3 is drawn over ball 2: its centre pixel is ball 3.
  assert seg[int((1 - 0.62) * 64), int(0.72 * 64)] == 3
