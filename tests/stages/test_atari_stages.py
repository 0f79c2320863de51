"""Each Atari stage unit in one process, without Ray: a real in-process Reverb server filled by
the plain collector, then abstract -> natural -> probe -> report on the `test` config."""

import csv
import json
import os

import pytest
import reverb

from rmr_dist import logging as logging_lib
from rmr_dist import workdir as workdir_lib
from rmr_dist.acting import atari_collector as collector_lib
from rmr_dist.evaluation import atari_ram_labels
from rmr_dist.evaluation import atari_probes
from rmr_dist.evaluation import atari_table1
from rmr_dist.replay import atari_adders
from rmr_dist.replay import atari_episode_store
from rmr_dist.replay import atari_tables
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
      # The learners read the Reverb server (the test config's read the episode store).
      replay=dict(config_lib.to_dict(config.replay), learner_source='reverb'),
      natural=dict(config_lib.to_dict(config.natural), curve_steps=(2,))))
  assert config.probe.byte_probes and config.probe.ceiling_steps > 0  # on in the test config
  root = str(tmp_path_factory.mktemp('atari_stages'))
  paths = workdir_lib.open_workdir(root, config, workdir_lib.ATARI_STAGES)
  server = atari_tables.make_server(atari_tables.make_tables(
      config.games, (config.env.frame_height, config.env.frame_width),
      abstract_max_size=1_000, natural_max_size=1_000, min_size_to_sample=1,
      natural_fractions=config.natural.data_fractions))
  address = f'127.0.0.1:{server.port}'
  store = atari_episode_store.EpisodeStore(paths.episodes)
  collector = collector_lib.Collector(config, store, atari_adders.TransitionAdder(
      reverb.Client(address), max_episode_steps=config.env.max_episode_steps))
  collector.run(collector_lib.make_work_units(config.games, config.heads.num_heads,
                                              config.heads.episodes_per_head))
  store.write_index()
  yield config, paths, address
  server.stop()


def test_stage_units_run_in_one_process(collected, monkeypatch):
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
  # Every encoder of Table 1 -- each variant, the untrained control, the supervised ceiling --
  # has the record of one scoring function.
  assert probe['ceiling'] is not None and len(probe['ceiling_fit']) == config.natural.num_seeds
  for rec in list(probe['variants'].values()) + [probe['untrained'], probe['ceiling']]:
    assert tuple(rec) == atari_probe.SCORE_KEYS
    assert all(0.0 <= f <= 1.0 for f in rec['train_f1'] + rec['holdout_f1'])
    assert all(0 < b <= n <= config.probe.steps
               for b, n in zip(rec['best_step'], rec['probe_steps']))
    # AtariARI byte probes on Pong's labelled variables: the across-categories F1 is the
    # mean of the per-category F1s.
    assert all(0.0 <= f <= 1.0 for f in rec['byte_f1'])
    for f, cats in zip(rec['byte_f1'], rec['byte_category_f1']):
      assert set(cats) <= set(atari_ram_labels.CATEGORIES)
      assert f == pytest.approx(sum(cats.values()) / len(cats))
  for fit in probe['ceiling_fit']:
    assert 0 < fit['steps'] <= config.probe.ceiling_steps and fit['n_val'] > 0
  # The controls: the untrained encoders are the learners' initialisations, scored by the
  # very function that scores the trained ones (same numbers when called again).
  assert len(probe['untrained']['bit_f1']) == config.natural.num_seeds
  assert 0.0 <= probe['majority_f1'] <= 1.0
  data = atari_probe.ProbeData(*atari_probe.make_train_data(config, paths, 'pong'),
                               *atari_probe.make_eval_data(config, paths, 'pong'))
  # The probe set: distinct frames of the stored training episodes, each with its episode.
  frames, ram, episode = data.train_frames, data.train_ram, data.train_episode
  assert 0 < len(ram) <= config.probe.train_transitions
  assert len({f.tobytes() + r.tobytes() for f, r in zip(frames, ram)}) == len(ram)
  store = atari_episode_store.EpisodeStore(paths.episodes)
  entries = store.entries('pong', 'train')
  assert probe['n_train_episodes'] == len(set(episode.tolist())) > 1
  for i in range(0, len(ram), 7):
    ep = store.read('pong', 'train', entries[episode[i]]['head'], entries[episode[i]]['episode'])
    assert any((ep.ram[t] == ram[i]).all() and (ep.frames[t] == frames[i]).all()
               for t in range(ep.length))
  encode_fn = atari_probe.make_encode_fn(config)
  # The probes' early stopping holds out whole episodes: none is in both parts.
  splits_made = []

  def recording_split(n, val_fraction, seed, groups=None):
    out = split_indices(n, val_fraction, seed, groups)
    splits_made.append((groups, out))
    return out

  split_indices = atari_probes.split_indices
  untrained = atari_probe.untrained_encoders(config, paths, 'pong')
  monkeypatch.setattr(atari_probes, 'split_indices', recording_split)
  for seed, params in untrained.items():
    again = atari_probe.score_encoder(config, encode_fn, params, data, 'pong', seed)
    assert again['bit_f1'] == probe['untrained']['bit_f1'][seed]
    assert again['byte_f1'] == probe['untrained']['byte_f1'][seed]
  monkeypatch.undo()
  assert len(splits_made) == 2 * config.natural.num_seeds  # bit and byte probes
  for groups, (fit, val) in splits_made:
    assert groups is episode and len(val) and not set(episode[fit]) & set(episode[val])
  # The ceiling: each seed's initialisation trained on the probe set's labels, then scored by
  # the same function.
  trained, fits = atari_probe.ceiling_encoders(config, paths, 'pong', data, encode_fn)
  assert fits == probe['ceiling_fit']
  for seed, params in trained.items():
    again = atari_probe.score_encoder(config, encode_fn, params, data, 'pong', seed)
    assert again['byte_f1'] == probe['ceiling']['byte_f1'][seed]
    assert again['bit_f1'] == probe['ceiling']['bit_f1'][seed]
  # Snapshots are the largest fraction's alone (the learning curve's); the others save none.
  assert atari_natural.curve_steps(config, 1.0) == [2]
  assert atari_natural.curve_steps(config, 0.5) == []
  # The learning curve's snapshot (curve_steps=(2,)) was probed for every model.
  assert set(probe['learning_curve']) == set(probe['learning_curve_byte']) == {'2'}
  assert all(len(f1) == config.natural.num_seeds
             for f1 in probe['learning_curve']['2'].values())

  logger = logging_lib.Logger(paths.tb)
  written = atari_report.run(config, paths, logger, say=lambda line: None)
  logger.close()
  assert {'table2.md', 'table1.md', 'table1_bit.md', 'table1_probe_f1.png'} <= set(written)
  with open(written['table1.md']) as f:
    md = f.read()
  assert (f'Every variant ({", ".join(config.natural.variants)}): C-SWM\'s contrastive hinge '
          "(the paper's), 4 updates") in md
  assert 'RMR − C-SWM [95% CI]' in md and 'ceiling' in md
  with open(written['results.json']) as f:
    results = json.load(f)
  assert results['fingerprints']['table1'] == paths.stage_fingerprints('probe')
  assert results['probes']['pong/f100']['untrained'] == probe['untrained']
  # Table 1's primary score is the across-categories byte F1; bit F1 is the second table.
  with open(written['table1.csv']) as f:
    byte_rows = list(csv.DictReader(f))
  with open(written['table1.csv']) as f:
    assert f.readline().strip() == ','.join(atari_table1.table1_columns(config.natural.variants))
  assert [r['game'] for r in byte_rows] == ['pong']
  assert float(byte_rows[0]['majority_f1']) == pytest.approx(probe['majority_byte_f1'])
  assert float(byte_rows[0]['untrained_f1_mean']) == pytest.approx(
      sum(probe['untrained']['byte_f1']) / config.natural.num_seeds)
  assert float(byte_rows[0]['ceiling_f1_mean']) == pytest.approx(
      sum(probe['ceiling']['byte_f1']) / config.natural.num_seeds)
  assert results['table1']['pong']['per_seed']['untrained'] == probe['untrained']['byte_f1']
  assert results['table1']['pong']['per_seed']['ceiling'] == probe['ceiling']['byte_f1']
  assert results['table1']['pong']['per_seed']['rmr'] == probe['variants']['rmr']['byte_f1']
  assert results['table1_bit']['pong']['per_seed']['untrained'] == probe['untrained']['bit_f1']
  with open(written['table1_bit.csv']) as f:
    bit_rows = list(csv.DictReader(f))
  assert float(bit_rows[0]['majority_f1']) == pytest.approx(probe['majority_f1'])
  for stem in ('learning_curve', 'learning_curve_bit'):
    with open(written[f'{stem}.csv']) as f:
      steps = {line.split(',')[1] for line in f.read().splitlines()[1:]}
    assert steps == {'0', '2', str(config.natural.num_steps)}
  assert 0.0 <= probe['majority_byte_f1'] <= 1.0
