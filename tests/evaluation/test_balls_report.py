"""Tests for rmr_dist.evaluation.balls_report: rows, paired differences, seeds needed."""

from rmr_dist.evaluation import balls_report


def _natural_result():
  return {'mse': {'rmr': [4.0e-3, 5.0e-3, 4.4e-3], 'end_to_end': [4.4e-3, 5.2e-3, 4.9e-3],
                  'rmr_random_p': [4.1e-3, 5.1e-3, 4.3e-3]},
          'fg_ari': {v: [0.99, 0.98, 0.99] for v in ('rmr', 'end_to_end', 'rmr_random_p')},
          'position_rmse': {v: [0.01, 0.02, 0.01] for v in ('rmr', 'end_to_end',
                                                            'rmr_random_p')},
          'latent_outside_abstract_span': {
              v: {'ball_slots': [0.9, 0.95, 0.92], 'background_slot': [0.9, 0.9, 0.9]}
              for v in ('rmr', 'end_to_end', 'rmr_random_p')},
          'oracle': {'mse': {'rmr': [3.0e-3, 3.1e-3, 3.2e-3],
                             'rmr_random_p': [3.5e-3, 3.3e-3, 3.6e-3]},
                     'fg_ari': {'rmr': [0.9] * 3, 'rmr_random_p': [0.9] * 3}},
          'rendered_mse': {'abstract': 3e-3, 'const_velocity': 8e-3, 'true': 0.0},
          'copy_last_mse': 1.8e-2}


def test_rows_and_markdown_report_every_variant_and_paired_interval():
  rows = balls_report.rows(None, _natural_result(), seed=0)
  variants = {r['variant'] for r in rows}
  assert variants == {'rmr', 'end_to_end', 'rmr_random_p', 'oracle', 'oracle_random_p',
                      'rendered_abstract', 'rendered_const_velocity', 'copy_last'}
  rmr = [r for r in rows if r['variant'] == 'rmr']
  assert [r['latent_span'] for r in rmr] == [0.9, 0.95, 0.92]
  text = balls_report.markdown(rows)
  assert '| natural_1step | rmr_random_p | 3 |' in text
  # RMR - end-to-end: differences -4e-4, -2e-4, -5e-4: mean -3.667e-4, sd 1.5275e-4,
  # t_{2, 0.975} = 4.3027: interval -3.667e-4 +- 3.7946e-4; relative to end-to-end's mean
  # 4.833e-3: -7.6%.
  assert '| rmr − end_to_end | 3 | -3.67e-04 [-7.46e-04, +1.28e-05] | -7.6% |' in text
  # Signed-rank: RMR lower on all 3 seeds: the exact two-sided p is 2 / 2^3 = 0.25.
  assert '| 3 of 3 | 0.25 |' in text.split('| rmr − end_to_end | 3 |')[1].split('\n')[0]
  assert '| rmr − rmr_random_p | 3 |' in text and '| oracle − end_to_end | 3 |' in text
  assert '| oracle − oracle_random_p | 3 |' in text
  # The secondary reading over seeds where both found the balls (FG-ARI >= 0.95): every
  # seed for RMR (no extra row), none for the oracle (0.9).
  assert 'rmr − end_to_end, found' not in text
  assert '| oracle − end_to_end, found | 0 |' in text


def test_pool_rows_counts_every_run_s_seeds():
  rows = balls_report.rows(None, _natural_result(), seed=0)
  text = balls_report.csv_text(balls_report.COLUMNS, rows)
  pooled = balls_report.pool_rows([text, text])
  assert sorted({r['seed'] for r in pooled if r['variant'] == 'rmr'}) == [0, 1, 2, 1000, 1001,
                                                                          1002]
  table = balls_report.markdown(pooled)
  assert '| rmr − end_to_end | 6 | -3.67e-04 [' in table  # the same differences, twice
