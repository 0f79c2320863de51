"""Tests for rmr_dist.evaluation.atari_table2: the Table 2 CSV, Markdown and JSON files."""

import csv
import json

import numpy as np
import pytest

from rmr_dist.evaluation import atari_table2


def test_table2_files(tmp_path):
  rows = [dict(game='pong', model=m, slot_acc=acc, bit_f1=f1, n_eval_slots=12,
               n_eval_transitions=500) for m, acc, f1 in
          [('mpnn', 0.8323, 0.952), ('copy', 0.6876, 0.873)]]
  paths = atari_table2.write_table2(str(tmp_path), rows)
  with open(paths['table2.csv']) as f:
    got = list(csv.DictReader(f))
  assert [r['model'] for r in got] == ['copy', 'mpnn']
  assert list(got[0]) == list(atari_table2.TABLE2_COLUMNS)
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
  got = {(c['a'], c['b']): c for c in atari_table2.paired_comparisons(rows)}
  assert set(got) == {('mpnn', 'deepsets'), ('mpnn', 'copy'), ('deepsets', 'copy')}
  c = got[('mpnn', 'deepsets')]
  d = np.subtract(mpnn, deepsets)  # A hand-computed paired t over the 4 episodes.
  assert c['mean_diff'] == pytest.approx(d.mean())
  assert c['t'] == pytest.approx(d.mean() / (d.std(ddof=1) / 2))
  assert c['a_better_episodes'] == 3 and c['n_episodes'] == 4
  paths = atari_table2.write_table2(str(tmp_path), rows, same_batches=True)
  md = open(paths['table2.md']).read()
  assert 'same batch sequence' in md and '| pong | MPNN | Deep Sets | +4.75 pts |' in md
  with open(paths['results.json']) as f:
    results = json.load(f)
  assert len(results['table2_paired']) == 3 and results['table2_same_batches'] is True


def test_paired_comparisons_refuse_different_episodes_and_skip_old_rows():
  rows = [_row('mpnn', [0.8, 0.7]), _row('deepsets', [0.8, 0.7, 0.6])]
  with pytest.raises(ValueError, match='different episodes'):
    atari_table2.paired_comparisons(rows)
  old = [{k: v for k, v in r.items() if k != 'episode_slot_acc'} for r in rows]
  assert atari_table2.paired_comparisons(old) == []


def test_table2_learning_curve(tmp_path):
  """Curve points from each row's `curve` plus its final scores at train_steps, in step order;
  rows without a curve (copy) are left out; the Markdown has a row per (game, step)."""
  rows = [
      {'game': 'pong', 'model': 'copy', 'slot_acc': 0.9, 'bit_f1': 0.5, 'n_eval_slots': 10,
       'n_eval_transitions': 2, 'train_steps': 0, 'curve': {}},
      {'game': 'pong', 'model': 'mpnn', 'slot_acc': 0.97, 'bit_f1': 0.8, 'n_eval_slots': 10,
       'n_eval_transitions': 2, 'train_steps': 300,
       'curve': {'200': {'slot_acc': 0.95, 'bit_f1': 0.7},
                 '100': {'slot_acc': 0.93, 'bit_f1': 0.6}}},
  ]
  points = atari_table2.curve_points(rows)
  assert [(p['model'], p['step'], p['bit_f1']) for p in points] == [
      ('mpnn', 100, 0.6), ('mpnn', 200, 0.7), ('mpnn', 300, 0.8)]
  paths = atari_table2.write_table2(str(tmp_path), rows)
  md = open(paths['table2_curve.md']).read()
  assert '| pong | 100 | 93.00% | 0.600 |' in md and '| pong | 300 | 97.00% | 0.800 |' in md
  with open(paths['results.json']) as f:
    assert json.load(f)['table2_curve'] == points
  assert 'table2_curve.md' not in atari_table2.write_table2(str(tmp_path / 'x'), rows[:1])


def test_results_json_keeps_each_tables_fingerprints():
  """Table 2 then Table 1 write their fingerprints into one results.json section."""
  from rmr_dist.evaluation import report_files
  results = report_files.merge_results({'fingerprints': {'table2': {'abstract': 'a'}}},
                                       {'fingerprints': {'table1': {'probe': 'p'}}, 'run': 1})
  assert results == {'fingerprints': {'table2': {'abstract': 'a'}, 'table1': {'probe': 'p'}},
                     'run': 1}
