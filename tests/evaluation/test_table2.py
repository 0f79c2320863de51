"""Tests for rmr_dist.evaluation.table2: the Table 2 CSV, Markdown and JSON files."""

import csv
import json

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
