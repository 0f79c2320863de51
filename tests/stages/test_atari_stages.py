"""Each Atari stage unit in one process, without Ray: a real in-process Reverb server filled by
the plain collector, then abstract -> natural -> probe -> report on the `test` config."""

import csv
import json
import os

import pytest
import reverb

from rmr_dist import logging as logging_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.acting import collector as collector_lib
from rmr_dist.replay import adders
from rmr_dist.replay import episode_store
from rmr_dist.replay import tables
from rmr_dist.stages import atari_abstract
from rmr_dist.stages import atari_natural
from rmr_dist.stages import atari_probe
from rmr_dist.stages import atari_report


@pytest.fixture(scope='module')
def collected(tmp_path_factory):
  from configs import atari as atari_configs
  from rmr_dist import config as config_lib
  config = config_lib.load_atari_config(atari_configs.get_config('test'))
  config = config_lib.load_atari_config(dict(
      config_lib.to_dict(config), abstract=dict(config_lib.to_dict(config.abstract),
                                                models=('copy', 'mpnn')),
      natural=dict(config_lib.to_dict(config.natural), curve_steps=(2,)),
      probe=dict(config_lib.to_dict(config.probe), byte_probes=True)))
  root = str(tmp_path_factory.mktemp('atari_stages'))
  paths = workdir_lib.open_workdir(root, config, workdir_lib.ATARI_STAGES)
  server = tables.make_server(tables.make_tables(
      config.games, (config.env.frame_height, config.env.frame_width),
      abstract_max_size=1_000, natural_max_size=1_000, min_size_to_sample=1,
      natural_fractions=config.natural.data_fractions))
  address = f'127.0.0.1:{server.port}'
  store = episode_store.EpisodeStore(paths.episodes)
  collector = collector_lib.Collector(config, store, adders.TransitionAdder(
      reverb.Client(address), max_episode_steps=config.env.max_episode_steps))
  collector.run(collector_lib.make_work_units(config.games, config.heads.num_heads,
                                              config.heads.episodes_per_head))
  store.write_index()
  yield config, paths, address
  server.stop()


def test_stage_units_run_in_one_process(collected):
  config, paths, address = collected
  logged = []
  log_fn = lambda scalars, step: logged.append(dict(scalars))
  rows = [atari_abstract.run(config, paths, 'pong', m, address, log_fn=log_fn)
          for m in ('copy', 'mpnn')]
  assert [r['model'] for r in rows] == ['copy', 'mpnn']
  assert rows[1]['train_steps'] == config.abstract.num_steps and rows[1]['resumed_from'] is None
  assert os.path.isdir(paths.processor_export('pong', 'mpnn'))
  assert any('eval/abstract/pong/mpnn/bit_f1' in s for s in logged)
  assert any('abstract/pong/mpnn/loss' in s for s in logged)

  trained = atari_natural.run(config, paths, 'pong', 1.0, address, log_fn=log_fn)
  assert trained['identical_batches'] and trained['steps'] == config.natural.num_steps
  assert any('natural/pong/f100/rmr/seed_1/loss' in s for s in logged)

  probe = atari_probe.run(config, paths, 'pong', 1.0, address)
  assert set(probe['variants']) == set(config.natural.variants)
  assert all(len(v['bit_f1']) == config.natural.num_seeds for v in probe['variants'].values())
  # A finished unit is read back, not redone.
  assert atari_probe.run(config, paths, 'pong', 1.0, address) == probe
  # Every probe reports its fit: train and held-out F1 on the scored slots, steps taken.
  for rec in list(probe['variants'].values()) + [probe['untrained']]:
    assert all(0.0 <= f <= 1.0 for f in rec['train_f1'] + rec['holdout_f1'])
    assert all(0 < b <= n <= config.probe.steps
               for b, n in zip(rec['best_step'], rec['probe_steps']))
    # AtariARI byte probes (probe.byte_probes) on Pong's labelled variables.
    assert all(f is None or 0.0 <= f <= 1.0 for f in rec['byte_f1'])
  # The controls: the untrained encoders are the learners' initialisations, scored by the
  # very function that scores the trained ones (same numbers when called again).
  assert len(probe['untrained']['bit_f1']) == config.natural.num_seeds
  assert 0.0 <= probe['majority_f1'] <= 1.0
  data = (*atari_probe.make_train_data(config, paths, 'pong', address),
          *atari_probe.make_eval_data(config, paths, 'pong'))
  # The probe set's transitions are distinct (none in both the fit and the held-out part).
  frames, ram = data[0], data[1]
  assert 0 < len(ram) <= config.probe.train_transitions
  assert len({f.tobytes() + r.tobytes() for f, r in zip(frames, ram)}) == len(ram)
  encode_fn = atari_probe.make_encode_fn(config)
  for seed, params in atari_probe.untrained_encoders(config, paths, 'pong').items():
    again = atari_probe.score_encoder(config, encode_fn, params, data, 'pong', seed)
    assert again['bit_f1'] == probe['untrained']['bit_f1'][seed]
  # Snapshots are the largest fraction's alone (the learning curve's); the others save none.
  assert atari_natural.curve_steps(config, 1.0) == [2]
  assert atari_natural.curve_steps(config, 0.5) == []
  # The learning curve's snapshot (curve_steps=(2,)) was probed for every model.
  assert set(probe['learning_curve']) == {'2'}
  assert all(len(f1) == config.natural.num_seeds
             for f1 in probe['learning_curve']['2'].values())

  logger = logging_lib.Logger(paths.tb)
  written = atari_report.run(config, paths, logger, say=lambda line: None)
  logger.close()
  assert 'table2.md' in written and 'table1.md' in written
  with open(written['table1.md']) as f:
    assert "Both variants: C-SWM's contrastive hinge (the paper's), 4 updates" in f.read()
  with open(written['results.json']) as f:
    results = json.load(f)
  assert results['fingerprints']['table1'] == paths.stage_fingerprints('probe')
  assert results['probes']['pong/f100']['untrained'] == probe['untrained']
  with open(written['table1.csv']) as f:
    header, row = f.read().splitlines()[:2]
  assert header.endswith('untrained_f1_mean,untrained_f1_std,majority_f1')
  with open(written['learning_curve.csv']) as f:
    steps = {line.split(',')[1] for line in f.read().splitlines()[1:]}
  assert steps == {'0', '2', str(config.natural.num_steps)}
  # The byte probes get the same tables, with their own majority control.
  assert all(f is not None for rec in list(probe['variants'].values()) + [probe['untrained']]
             for f in rec['byte_f1'])
  assert 0.0 <= probe['majority_byte_f1'] <= 1.0
  assert set(probe['learning_curve_byte']) == {'2'}
  with open(written['table1_byte.csv']) as f:
    byte_rows = list(csv.DictReader(f))
  assert [r['game'] for r in byte_rows] == ['pong']
  assert float(byte_rows[0]['majority_f1']) == pytest.approx(probe['majority_byte_f1'])
  assert float(byte_rows[0]['untrained_f1_mean']) == pytest.approx(
      sum(probe['untrained']['byte_f1']) / config.natural.num_seeds)
  with open(written['table1_byte.md']) as f:
    assert 'RMR probe byte F1' in f.read()
  with open(written['learning_curve_byte.csv']) as f:
    steps = {line.split(',')[1] for line in f.read().splitlines()[1:]}
  assert steps == {'0', '2', str(config.natural.num_steps)}
  assert results['table1_byte']['pong']['per_seed']['untrained'] == probe['untrained']['byte_f1']
