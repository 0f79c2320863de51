"""Work directory: stage fingerprints, the data-config check, cached results, atomic writers."""

import dataclasses
import json
import os

import pytest

from rmr_dist import config as config_lib
from rmr_dist import storage
from rmr_dist import workdir as workdir_lib


def _replace(config, section, **changes):
  return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section),
                                                                     **changes)})


def test_a_later_change_keeps_upstream_fingerprints(test_config):
  base = workdir_lib.fingerprints(config_lib.to_dict(test_config), workdir_lib.ATARI_STAGES)
  changed = workdir_lib.fingerprints(
      config_lib.to_dict(_replace(test_config, 'natural', num_steps=7)),
      workdir_lib.ATARI_STAGES)
  assert {k: base[k] == changed[k] for k in base} == {
      'agent': True, 'collect': True, 'abstract': True, 'natural': False, 'probe': False}


def test_agent_settings_move_only_the_agent_fingerprint(test_config):
  base = workdir_lib.fingerprints(config_lib.to_dict(test_config), workdir_lib.ATARI_STAGES)
  changed = workdir_lib.fingerprints(
      config_lib.to_dict(_replace(test_config, 'agent', learning_rate=1e-2)),
      workdir_lib.ATARI_STAGES)
  assert {k for k in base if base[k] != changed[k]} == {'agent'}
  cadence = workdir_lib.fingerprints(
      config_lib.to_dict(_replace(test_config, 'agent', num_actors=3, log_every=7)),
      workdir_lib.ATARI_STAGES)
  assert cadence == base


def test_an_upstream_change_moves_every_later_fingerprint(test_config):
  base = workdir_lib.fingerprints(config_lib.to_dict(test_config), workdir_lib.ATARI_STAGES)
  changed = workdir_lib.fingerprints(
      config_lib.to_dict(_replace(test_config, 'abstract', learning_rate=3e-3)),
      workdir_lib.ATARI_STAGES)
  assert base['collect'] == changed['collect']
  assert all(base[k] != changed[k] for k in ('abstract', 'natural', 'probe'))


def test_cadence_does_not_change_a_fingerprint(test_config):
  base = workdir_lib.fingerprints(config_lib.to_dict(test_config), workdir_lib.ATARI_STAGES)
  changed = workdir_lib.fingerprints(
      config_lib.to_dict(_replace(test_config, 'natural', log_every=3, save_every=5)),
      workdir_lib.ATARI_STAGES)
  assert base == changed


def test_data_change_is_refused_naming_it(tmp_path, test_config):
  workdir_lib.open_workdir(str(tmp_path), test_config, workdir_lib.ATARI_STAGES)
  workdir_lib.open_workdir(str(tmp_path), _replace(test_config, 'natural', num_steps=3),
                           workdir_lib.ATARI_STAGES)  # A later stage: fine.
  with pytest.raises(config_lib.ConfigError, match=r'env\.frame_skip \(recorded 4, now 2\)'):
    workdir_lib.open_workdir(str(tmp_path), _replace(test_config, 'env', frame_skip=2),
                             workdir_lib.ATARI_STAGES)


def test_an_added_value_at_its_neutral_setting_keeps_older_work_directories(tmp_path,
                                                                            test_config):
  """heads.min_persistence came after work directories existed: at 0 (what the code did before
  it) the fingerprints and data.json are those of a config without it; other values count."""
  as_dict = config_lib.to_dict(test_config)
  assert as_dict['heads']['min_persistence'] == 0.0
  older = json.loads(json.dumps(as_dict))
  del older['heads']['min_persistence']
  assert (workdir_lib.fingerprints(as_dict, workdir_lib.ATARI_STAGES) ==
          workdir_lib.fingerprints(older, workdir_lib.ATARI_STAGES))
  collect = next(s for s in workdir_lib.ATARI_STAGES if s.data)
  workdir_lib.atomic_write_json(str(tmp_path / 'data.json'),
                                workdir_lib.stage_values(older, collect))
  workdir_lib.open_workdir(str(tmp_path), test_config, workdir_lib.ATARI_STAGES)
  persistent = _replace(test_config, 'heads', min_persistence=0.5)
  assert (workdir_lib.fingerprints(config_lib.to_dict(persistent), workdir_lib.ATARI_STAGES)
          ['collect'] != workdir_lib.fingerprints(as_dict, workdir_lib.ATARI_STAGES)['collect'])
  with pytest.raises(config_lib.ConfigError,
                     match=r'heads\.min_persistence \(recorded None, now 0\.5\)'):
    workdir_lib.open_workdir(str(tmp_path), persistent, workdir_lib.ATARI_STAGES)


def test_agent_action_set_full_keeps_older_agent_fingerprints(test_config):
  """agent.action_set came after agent stages existed: 'full' is what they did."""
  as_dict = config_lib.to_dict(test_config)
  assert as_dict['agent']['action_set'] == 'minimal'  # Every config's default now.
  older = json.loads(json.dumps(as_dict))
  del older['agent']['action_set']
  full = config_lib.to_dict(_replace(test_config, 'agent', action_set='full'))
  prints = lambda d: workdir_lib.fingerprints(d, workdir_lib.ATARI_STAGES)['agent']
  assert prints(full) == prints(older) != prints(as_dict)


def test_workdir_that_is_a_file_is_refused(tmp_path, test_config):
  path = tmp_path / 'taken'
  path.write_text('x')
  with pytest.raises(config_lib.ConfigError, match='is an existing file'):
    workdir_lib.open_workdir(str(path), test_config, workdir_lib.ATARI_STAGES)


def test_stage_dirs_and_records(tmp_path, test_config):
  wd = workdir_lib.open_workdir(str(tmp_path), test_config, workdir_lib.ATARI_STAGES)
  fp = wd.fingerprints
  assert wd.abstract_unit('pong', 'mpnn') == os.path.join(str(tmp_path), 'abstract',
                                                          fp['abstract'], 'pong', 'mpnn')
  assert wd.natural_unit('pong', 0.3).endswith(os.path.join(fp['natural'], 'pong', 'f30'))
  directory = wd.record_stage('natural')
  with open(os.path.join(directory, 'stage.json')) as f:
    record = json.load(f)
  assert record['upstream'] == {'abstract': fp['abstract']}
  assert record['values']['natural.num_steps'] == test_config.natural.num_steps
  assert 'natural.log_every' not in record['values']
  assert wd.stage_fingerprints('probe') == {k: fp[k] for k in sorted(fp) if k != 'agent'}


def test_cached_result_computes_once(tmp_path):
  calls = []
  compute = lambda: calls.append(1) or {'x': len(calls)}
  path = str(tmp_path / 'unit' / 'result.json')
  assert workdir_lib.cached_result(path, compute) == {'x': 1}
  assert workdir_lib.cached_result(path, compute) == {'x': 1}
  assert len(calls) == 1
  assert workdir_lib.cached_result(str(tmp_path / 'none.json'), lambda: None) is None
  assert not os.path.exists(tmp_path / 'none.json')


def test_atomic_writers_leave_no_temp_files(tmp_path):
  workdir_lib.atomic_write_json(str(tmp_path / 'a' / 'x.json'), {'b': 1})
  workdir_lib.atomic_write_text(str(tmp_path / 'a' / 'y.md'), 'hi')
  workdir_lib.atomic_write_npz(str(tmp_path / 'a' / 'z.npz'), v=[1, 2])
  assert sorted(os.listdir(tmp_path / 'a')) == ['x.json', 'y.md', 'z.npz']
  with pytest.raises(ZeroDivisionError):
    storage.write_with(str(tmp_path / 'a' / 'w'), lambda f: 1 / 0)
  assert sorted(os.listdir(tmp_path / 'a')) == ['x.json', 'y.md', 'z.npz']


def test_a_directory_made_before_data_json_is_checked_against_its_config(tmp_path,
                                                                        test_config):
  other = config_lib.to_dict(_replace(test_config, 'heads', num_heads=7))
  workdir_lib.atomic_write_json(str(tmp_path / 'config.json'), other)
  with pytest.raises(config_lib.ConfigError, match=r'heads\.num_heads \(recorded 7, now 4\)'):
    workdir_lib.open_workdir(str(tmp_path), test_config, workdir_lib.ATARI_STAGES)
  assert not os.path.exists(tmp_path / 'data.json')
