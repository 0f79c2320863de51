"""Policy heads: the Ape-X schedule and that heads behave measurably differently."""

import numpy as np
import pytest

from rmr_dist.acting import atari_heads
from rmr_dist.acting import atari_policies
from rmr_dist.envs import atari


def test_apex_schedule_hand_computed():
  eps = atari_heads.apex_epsilons(3, epsilon=0.4, alpha=7.0)
  # i=0: 0.4**1; i=1: 0.4**4.5; i=2: 0.4**8
  np.testing.assert_allclose(eps, [0.4, 0.4 ** 4.5, 0.4 ** 8])
  np.testing.assert_allclose(atari_heads.apex_epsilons(1, 0.4, 7.0), [0.4])


def test_specs_deterministic_and_distinct():
  kw = dict(epsilon=0.4, alpha=7.0, max_persistence=0.8, preference_concentration=0.3)
  a = atari_heads.make_head_specs(8, seed=3, **kw)
  b = atari_heads.make_head_specs(8, seed=3, **kw)
  for x, y in zip(a, b):
    assert x.epsilon == y.epsilon and x.persistence == y.persistence
    np.testing.assert_array_equal(x.preferences, y.preferences)
  for s in a:
    assert s.preferences.shape == (18,) and s.preferences.sum() == pytest.approx(1.0)
    assert 0.0 <= s.persistence <= 0.8
  # Distinct favourite actions across heads.
  assert len({int(np.argmax(s.preferences)) for s in a}) >= 4


def test_persistence_is_drawn_between_its_bounds():
  kw = dict(epsilon=0.4, alpha=7.0, preference_concentration=0.3, seed=3)
  narrow = atari_heads.make_head_specs(16, min_persistence=0.6, max_persistence=0.9, **kw)
  assert all(0.6 <= s.persistence <= 0.9 for s in narrow)
  assert len({s.persistence for s in narrow}) == 16  # Still one draw per head.
  # Only the persistence draw moves: epsilons and preferences are those of the default range.
  wide = atari_heads.make_head_specs(16, max_persistence=0.8, **kw)
  for x, y in zip(narrow, wide):
    assert x.epsilon == y.epsilon
    np.testing.assert_array_equal(x.preferences, y.preferences)


def _play(spec, steps=300, seed=0):
  env = atari.AtariEnv('breakout')
  head = atari_heads.Head(spec, atari_policies.RandomPolicy())
  head.begin_episode(np.random.default_rng(seed))
  obs = env.reset(seed)
  actions, rams = [], [obs.ram]
  for _ in range(steps):
    a = head.act(obs)
    r = env.step(a)
    obs = r.observation
    actions.append(a)
    rams.append(obs.ram)
    if r.terminal or r.truncated:
      obs = env.reset(seed + len(actions))
  return np.bincount(actions, minlength=18) / len(actions), np.stack(rams)


def test_heads_differ_in_actions_and_ram_coverage():
  specs = atari_heads.make_head_specs(8, epsilon=0.4, alpha=7.0, max_persistence=0.8,
                                      preference_concentration=0.3, seed=0)
  # The most exploratory head (0) against the least (7) and a middle one (3).
  hists, coverage = [], []
  for i in (0, 3, 7):
    hist, rams = _play(specs[i])
    hists.append(hist)
    coverage.append({(slot, v) for slot in range(128) for v in np.unique(rams[:, slot])})
  for i in range(3):
    for j in range(i + 1, 3):
      tv = 0.5 * np.abs(hists[i] - hists[j]).sum()
      assert tv > 0.15, (i, j, tv)
      assert coverage[i] != coverage[j]
  # Head 0 explores with its peaky preferences: its favourite action is over-represented.
  fav = int(np.argmax(specs[0].preferences))
  assert hists[0][fav] > 1.0 / 18 + 0.1


def test_persistence_repeats_actions():
  base = atari_heads.make_head_specs(1, epsilon=0.0, alpha=0.0, max_persistence=0.0,
                                     preference_concentration=1.0, seed=0)[0]
  sticky = atari_heads.HeadSpec(index=0, epsilon=0.0, persistence=0.9, preferences=base.preferences)
  obs = atari.AtariEnv('pong').reset(0)

  def repeat_rate(spec):
    head = atari_heads.Head(spec, atari_policies.RandomPolicy())
    head.begin_episode(np.random.default_rng(1))
    acts = [head.act(obs) for _ in range(2000)]
    return np.mean(np.diff(acts) == 0)

  assert repeat_rate(base) == pytest.approx(1 / 18, abs=0.03)
  assert repeat_rate(sticky) > 0.85
