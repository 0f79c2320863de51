"""Train/validation split: by episode, deterministic, balanced across heads."""

import collections

from rmr_dist.replay import splits


def test_paper_split_is_48_48_and_every_head_in_both():
  n, e = 32, 3
  table = {(h, k): splits.episode_split(h, k, e, 0.5) for h in range(n) for k in range(e)}
  counts = collections.Counter(table.values())
  assert counts == {'train': 48, 'val': 48}
  for h in range(n):
    per_head = {table[(h, k)] for k in range(e)}
    assert per_head == {'train', 'val'}


def test_deterministic_and_order_free():
  a = [splits.episode_split(h, k, 4, 0.3) for h in range(10) for k in range(4)]
  b = [splits.episode_split(h, k, 4, 0.3) for h in reversed(range(10)) for k in reversed(range(4))]
  assert a == list(reversed(b))
  assert collections.Counter(a)['val'] == 12  # floor(40 * 0.3)


def test_hand_computed_small_case():
  # 2 heads x 2 episodes, f=0.5: k=0 train, 1 val, 2 train, 3 val.
  assert [splits.episode_split(h, k, 2, 0.5) for h in range(2) for k in range(2)] == [
      'train', 'val', 'train', 'val']


def test_data_fractions_are_nested_and_about_the_right_size():
  eps = [(h, e) for h in range(32) for e in range(3)]
  members = {f: {x for x in eps if splits.in_fraction(0, 'pong', *x, f)} for f in (0.1, 0.3, 1.0)}
  assert members[0.1] <= members[0.3] <= members[1.0] and len(members[1.0]) == 96
  assert 3 <= len(members[0.1]) <= 18 and 15 <= len(members[0.3]) <= 45
  assert members[0.3] == {x for x in eps if splits.in_fraction(0, 'pong', *x, 0.3)}
