"""Tests for rmr_dist.evaluation.atari_table1: Table 1 and data-efficiency files."""

from __future__ import annotations

import csv
import json
import math
import os

import pytest

from rmr_dist.evaluation import statistics
from rmr_dist.evaluation import atari_table1

_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

PER_GAME = {
    'pong': {'cswm': [0.60, 0.62, 0.61, 0.63, 0.59], 'rmr': [0.70, 0.71, 0.69, 0.72, 0.70],
             'rmr_random_p': [0.65, 0.66, 0.64, 0.67, 0.65],
             'untrained': [0.60, 0.62, 0.61, 0.60, 0.61], 'majority': 0.5,
             'ceiling': [0.9, 0.92, 0.91, 0.9, 0.93]},
    'breakout': {'cswm': [0.50, 0.55, 0.52, 0.58, 0.51], 'rmr': [0.51, 0.54, 0.53, 0.57, 0.52],
                 'rmr_random_p': [0.5, 0.5, 0.5, 0.5, 0.5],
                 'untrained': [0.50, 0.50, 0.51, 0.52, 0.50], 'majority': 0.45,
                 'ceiling': None},  # no ceiling (probe.ceiling_steps = 0)
    'boxing': {'cswm': [0.4, 0.4, 0.4], 'rmr': [0.4, 0.4, 0.4],  # identical: p = NaN
               'rmr_random_p': [0.3, 0.3, 0.3],
               'untrained': [0.4, 0.41, 0.39], 'majority': 0.3},
}
T_4_975 = 2.7764451051977987  # t quantile 0.975 with 4 degrees of freedom (tables)


def _assert_png(path: str) -> None:
  assert os.path.getsize(path) > 1000
  with open(path, 'rb') as f:
    assert f.read(8) == _PNG_MAGIC


def test_write_table1(tmp_path):
  report = str(tmp_path / 'report')
  os.makedirs(report)
  with open(os.path.join(report, 'results.json'), 'w') as f:
    json.dump({'table2': [{'game': 'pong'}]}, f)
  paths = atari_table1.write_table1(report, PER_GAME, extra={'run': 'test'})
  assert set(paths) == {'table1.csv', 'table1.md', 'table1_probe_f1.png', 'results.json'}

  with open(paths['table1.csv']) as f:
    reader = csv.DictReader(f)
    assert tuple(reader.fieldnames) == atari_table1.table1_columns(('rmr', 'cswm', 'rmr_random_p'))
    rows = {r['game']: r for r in reader}
  assert tuple(reader.fieldnames[:6]) == ('game', 'n_seeds', 'majority_f1', 'untrained_f1_mean',
                                          'untrained_f1_std', 'untrained_f1_seeds')
  for key in ('rmr_f1_mean', 'cswm_f1_std', 'rmr_random_p_f1_seeds', 'ceiling_f1_mean',
              'rmr_minus_cswm_ci_low', 'rmr_minus_rmr_random_p_p_value', 'rmr_better'):
    assert key in reader.fieldnames
  assert float(rows['pong']['untrained_f1_mean']) == pytest.approx(0.608)
  assert float(rows['boxing']['untrained_f1_std']) == pytest.approx(0.01)
  assert float(rows['breakout']['majority_f1']) == pytest.approx(0.45)
  assert list(rows) == ['boxing', 'breakout', 'pong']  # sorted
  assert rows['pong']['n_seeds'] == '5' and rows['boxing']['n_seeds'] == '3'
  assert rows['pong']['rmr_f1_seeds'] == '0.7;0.71;0.69;0.72;0.7'  # every seed
  assert float(rows['pong']['ceiling_f1_mean']) == pytest.approx(0.912)
  assert rows['breakout']['ceiling_f1_mean'] == 'nan' and rows['breakout']['ceiling_f1_seeds'] == ''
  assert rows['pong']['rmr_better'] == 'True'
  assert rows['breakout']['rmr_better'] == 'False'  # not significant
  assert rows['boxing']['rmr_better'] == 'False'
  assert rows['boxing']['rmr_minus_cswm_p_value'] == 'nan'
  assert float(rows['pong']['rmr_f1_mean']) == pytest.approx(0.704)
  # Pong, rmr - cswm: d = [0.10, 0.09, 0.08, 0.09, 0.11], mean 0.094, sd (ddof=1)
  # sqrt(520e-6 / 4); the 95% t-interval is 0.094 +- t_{4, 0.975} sd / sqrt(5).
  half = T_4_975 * math.sqrt(520e-6 / 4) / math.sqrt(5)
  assert float(rows['pong']['rmr_minus_cswm_mean']) == pytest.approx(0.094)
  assert float(rows['pong']['rmr_minus_cswm_ci_low']) == pytest.approx(0.094 - half)
  assert float(rows['pong']['rmr_minus_cswm_ci_high']) == pytest.approx(0.094 + half)
  assert float(rows['pong']['rmr_minus_cswm_p_value']) < 0.05
  # The smallest difference 5 seeds detect at p < 0.05 with 80% power at that spread.
  assert float(rows['pong']['rmr_minus_cswm_detectable']) == pytest.approx(
      statistics.detectable_difference(5, math.sqrt(520e-6 / 4)))
  # Above the normal approximation (1.960 + 0.842) sd / sqrt(n): t quantiles are wider.
  assert float(rows['pong']['rmr_minus_cswm_detectable']) > (
      2.802 * math.sqrt(520e-6 / 4) / math.sqrt(5))
  # Pong, rmr - rmr_random_p: a constant 0.05 per seed (sd 0): the interval is the point.
  assert float(rows['pong']['rmr_minus_rmr_random_p_mean']) == pytest.approx(0.05)
  assert float(rows['pong']['rmr_minus_rmr_random_p_ci_low']) == pytest.approx(0.05)
  assert float(rows['pong']['rmr_minus_rmr_random_p_ci_high']) == pytest.approx(0.05)

  md = open(paths['table1.md']).read()
  assert '| pong |' in md and '**' in md and 'RMR (random P)' in md and 'ceiling' in md
  assert 'RMR − C-SWM [95% CI] (p; detectable)' in md and '+0.094 [' in md
  assert '1 of 3 games' in md

  with open(paths['results.json']) as f:
    results = json.load(f)
  assert results['table2'] == [{'game': 'pong'}]  # merged, not overwritten
  assert results['run'] == 'test'
  assert results['table1']['pong']['per_seed']['rmr'] == PER_GAME['pong']['rmr']
  assert results['table1']['pong']['per_seed']['ceiling'] == PER_GAME['pong']['ceiling']
  assert 'ceiling' not in results['table1']['breakout']['per_seed']
  assert results['table1']['boxing']['rmr_minus_cswm_p_value'] is None  # NaN -> null
  assert results['table1']['pong']['per_seed']['untrained'] == PER_GAME['pong']['untrained']
  # pong: RMR 0.704 - 0.608 > 0.0084 beats the control, C-SWM (0.61) does not.
  assert results['table1']['pong']['rmr_beats_untrained']
  assert not results['table1']['pong']['cswm_beats_untrained']
  assert '†' in md
  _assert_png(paths['table1_probe_f1.png'])
  assert not [n for n in os.listdir(report) if '.tmp' in n]  # no temp files left behind


def test_table1_with_one_variant_has_no_comparisons(tmp_path):
  per_game = {'pong': {'cswm': [0.6, 0.62], 'untrained': [0.5, 0.52], 'majority': 0.4}}
  assert atari_table1.variants_of(per_game) == ('cswm',)
  paths = atari_table1.write_table1(str(tmp_path), per_game, metric=atari_table1.BIT)
  assert set(paths) == {'table1_bit.csv', 'table1_bit.md', 'table1_bit_probe_f1.png',
                        'results.json'}
  with open(paths['table1_bit.csv']) as f:
    header = next(csv.reader(f))
  assert 'rmr_better' not in header
  assert [h for h in header if '_minus_' in h] == [
      f'cswm_minus_untrained_{k}' for k in ('mean', 'ci_low', 'ci_high', 'p_value')]
  assert 'C-SWM' in open(paths['table1_bit.md']).read()


def test_each_variant_is_paired_with_its_own_initialisation():
  """variant − untrained per seed (seed i's untrained encoder is its start), by hand: pong's
  rmr − untrained = [0.10, 0.09, 0.08, 0.12, 0.09], mean 0.096, std 0.0152 (ddof 1)."""
  row = next(r for r in atari_table1.table1_rows(PER_GAME) if r['game'] == 'pong')
  diffs = [0.10, 0.09, 0.08, 0.12, 0.09]
  mean, sd = 0.096, math.sqrt(sum((d - 0.096) ** 2 for d in diffs) / 4)
  assert sd == pytest.approx(0.015166, abs=1e-6)
  half = T_4_975 * sd / math.sqrt(5)
  assert row['rmr_minus_untrained_mean'] == pytest.approx(mean)
  assert row['rmr_minus_untrained_ci_low'] == pytest.approx(mean - half)
  assert row['rmr_minus_untrained_ci_high'] == pytest.approx(mean + half)
  assert row['rmr_minus_untrained_p_value'] < 1e-3
  md = atari_table1.table1_markdown(atari_table1.table1_rows(PER_GAME))
  assert '| Game | RMR − untrained f~ | C-SWM − untrained f~ | RMR (random P) − untrained f~ |' in md
  assert f'+0.096 [{mean - half:+.3f}, {mean + half:+.3f}] (p ' in md


def test_write_data_efficiency(tmp_path):
  results = {
      0.1: {'pong': {'cswm': [0.4, 0.45], 'rmr': [0.5, 0.52]},
            'breakout': {'cswm': [0.3], 'rmr': [0.35]}},
      '1.0': {'pong': {'cswm': [0.6, 0.62], 'rmr': [0.7, 0.69]},
              'breakout': {'cswm': [0.5], 'rmr': [0.55]}},
  }
  controls = {'pong': {'untrained_f1_mean': 0.5, 'untrained_f1_std': 0.01, 'majority_f1': 0.4}}
  paths = atari_table1.write_data_efficiency(str(tmp_path), results, controls)
  with open(paths['data_efficiency.csv']) as f:
    reader = csv.DictReader(f)
    assert tuple(reader.fieldnames) == ('fraction', 'game', 'variant', 'seed', 'f1')
    rows = list(reader)
  assert len(rows) == 2 * (4 + 2)
  first = rows[0]
  assert (first['fraction'], first['game'], first['variant'], first['seed']) == (
      '0.1', 'breakout', 'rmr', '0')  # variants in Table 1's order: RMR first
  assert rows[-1]['variant'] == 'cswm' and rows[-1]['seed'] == '1'
  assert math.isclose(float(rows[-1]['f1']), 0.62)
  _assert_png(paths['data_efficiency.png'])


def test_write_table1_by_fraction(tmp_path):
  results = {
      '1.0': {'pong': {'cswm': [0.6, 0.62, 0.61], 'rmr': [0.7, 0.69, 0.72],
                       'untrained': [0.5, 0.51, 0.5], 'majority': 0.1}},
      0.1: {'pong': {'cswm': [0.4, 0.45, 0.43], 'rmr': [0.5, 0.52, 0.5],
                     'untrained': [0.5, 0.51, 0.5], 'majority': 0.1}},
  }
  paths = atari_table1.write_table1_by_fraction(str(tmp_path), results)
  with open(paths['table1_by_fraction.csv']) as f:
    rows = list(csv.DictReader(f))
  assert [(r['game'], r['fraction']) for r in rows] == [('pong @10%', '0.1'), ('pong @100%', '1.0')]
  # RMR - C-SWM at 10%: differences +0.10, +0.07, +0.07: mean +0.08.
  assert math.isclose(float(rows[0]['rmr_minus_cswm_mean']), 0.08, abs_tol=1e-12)
  assert float(rows[0]['rmr_minus_cswm_detectable']) > 0
  text = open(paths['table1_by_fraction.md']).read()
  assert '| pong @10% | 0.100 | 0.503 ± 0.006 |' in text and '| pong @100% |' in text


def test_write_learning_curve(tmp_path):
  curve = {'pong': {0: {'cswm': [0.5, 0.52], 'rmr': [0.5, 0.52]},
                    10: {'cswm': [0.6, 0.61], 'rmr': [0.62, 0.6]}}}
  paths = atari_table1.write_learning_curve(str(tmp_path), curve, {'pong': {
      'untrained_f1_mean': 0.51, 'ceiling_f1_mean': 0.8, 'ceiling_f1_std': 0.01}})
  with open(paths['learning_curve.csv']) as f:
    rows = list(csv.DictReader(f))
  assert tuple(rows[0]) == atari_table1.LEARNING_CURVE_COLUMNS and len(rows) == 8
  assert [(r['step'], r['variant'], r['seed']) for r in rows[:2]] == [('0', 'cswm', '0'),
                                                                       ('0', 'cswm', '1')]
  _assert_png(paths['learning_curve.png'])


def test_beats_control():
  assert atari_table1.beats_control([0.7, 0.72], [0.6, 0.62, 0.61])
  assert not atari_table1.beats_control([0.61, 0.62], [0.6, 0.62, 0.61])  # within one std
  assert not atari_table1.beats_control([0.9], [0.6])  # one untrained seed: no std, no claim


def test_reference_lines_show_the_untrained_and_ceiling_levels():
  from matplotlib.figure import Figure
  ax = Figure().add_subplot(1, 1, 1)
  atari_table1._reference_lines(ax, {'untrained_f1_mean': 0.5, 'untrained_f1_std': 0.01,
                                     'ceiling_f1_mean': 0.9, 'majority_f1': 0.3})
  lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines()}
  assert lines == {'untrained f~': 0.5, 'ceiling': 0.9, 'majority': 0.3}
  ax = Figure().add_subplot(1, 1, 1)
  atari_table1._reference_lines(ax, {'untrained_f1_mean': 0.5, 'ceiling_f1_mean': float('nan')})
  assert [line.get_label() for line in ax.get_lines()] == ['untrained f~']
