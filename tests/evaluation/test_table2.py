"""Tests for rmr_dist.evaluation.table2: the Table 2 CSV, Markdown and JSON files."""

import csv
import json

import numpy as np
import pytest

from rmr_dist.evaluation import table2


def test_table2_files(tmp_path):
  rows = [dict(game='pong', model=m, slot_acc=acc, bit_f1=f1, n_eval_slots=12,
               n_eval_transitions=500) for m, acc, f1 in
          [('mpnn', 0.8323, 0.952), ('copy', 0.6876, 0.873)]]
  paths = table2.write_table2(str(tmp_path), rows)
  with open(paths['table2.csv']) as f:
    got = list(csv.DictReader(f))
  assert [r['model'] for r in got] == ['copy', 'mpnn']
  assert list(got[0]) == list(table2.TABLE2_COLUMNS)
  md = open(paths['table2.md']).read()
  assert '| pong | 68.76% | 0.873 | 83.23% | 0.952 | 12 | 500 |' in md
  assert 'Copy baseline slot acc.' in md and 'MPNN bit F1' in md
  with open(paths['results.json']) as f:
    assert len(json.load(f)['table2']) == 2


def _row(model, episodes):
  return dict(game='pong', model=model, slot_acc=float(np.mean(episodes)), bit_f1=0.9,
              n_eval_slots=12, n_eval_transitions=500, episode_slot_acc=list(episodes))


def test_paired_comparisons_over_episodes(tmp_path):
  mpnn, deepsets = [0.80, 0.70, 0.90, 0.60], [0.75, 0.71, 0.85, 0.50]
  rows = [_row('mpnn', mpnn), _row('deepsets', deepsets), _row('copy', [0.5] * 4)]
  got = {(c['a'], c['b']): c for c in table2.paired_comparisons(rows)}
  assert set(got) == {('mpnn', 'deepsets'), ('mpnn', 'copy'), ('deepsets', 'copy')}
  c = got[('mpnn', 'deepsets')]
  d = np.subtract(mpnn, deepsets)  # A hand-computed paired t over the 4 episodes.
  assert c['mean_diff'] == pytest.approx(d.mean())
  assert c['t'] == pytest.approx(d.mean() / (d.std(ddof=1) / 2))
  assert c['a_better_episodes'] == 3 and c['n_episodes'] == 4
  paths = table2.write_table2(str(tmp_path), rows, same_batches=True)
  md = open(paths['table2.md']).read()
  assert 'same batch sequence' in md and '| pong | MPNN | Deep Sets | +4.75 pts |' in md
  with open(paths['results.json']) as f:
    results = json.load(f)
  assert len(results['table2_paired']) == 3 and results['table2_same_batches'] is True


def test_paired_comparisons_refuse_different_episodes_and_skip_old_rows():
  rows = [_row('mpnn', [0.8, 0.7]), _row('deepsets', [0.8, 0.7, 0.6])]
  with pytest.raises(ValueError, match='different episodes'):
    table2.paired_comparisons(rows)
  old = [{k: v for k, v in r.items() if k != 'episode_slot_acc'} for r in rows]
  assert table2.paired_comparisons(old) == []
