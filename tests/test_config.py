"""Config loading and validation."""

import pytest

from configs import atari as atari_configs
from configs import balls as balls_configs
from rmr_dist import config as config_lib
from rmr_dist.distributed import atari_program
from rmr_dist.learning import atari_natural as natural_learning
from rmr_dist.learning import lockstep


@pytest.mark.parametrize('variant', atari_configs.VARIANTS)
def test_variants_validate(variant):
  cfg = config_lib.load_atari_config(atari_configs.get_config(variant))
  assert cfg.games and all(g in config_lib.valid_games() for g in cfg.games)


def test_gpu_variants_reserve_a_gpu_and_the_atari_one_reads_the_store():
  config_lib.load_balls_config(balls_configs.get_config('gpu'))
  cfg = config_lib.load_atari_config(atari_configs.get_config('gpu'))
  assert cfg.ray.learner_num_gpus == 1.0 and len(cfg.games) >= 2
  # Issue 33: at least 100k samples per natural model (the anchors' budgets), the study's
  # smallest and largest data fractions.
  assert cfg.natural.num_steps * cfg.natural.batch_size >= 100_000
  assert cfg.natural.data_fractions == (0.1, 1.0)
  assert cfg.replay.learner_source == 'store' and cfg.collect.store_all_episodes


def test_study_variant_can_answer_the_paired_question():
  """Issue 33: >= 8 seeds, three data fractions, RMR beside C-SWM and RMR through an untrained
  P on identical batches, a learning curve, Table 2 at the paper's width."""
  cfg = config_lib.load_atari_config(atari_configs.get_config('study'))
  assert cfg.natural.curve_steps and max(cfg.natural.curve_steps) < cfg.natural.num_steps
  assert cfg.natural.data_fractions == (0.1, 0.3, 1.0) and cfg.natural.num_seeds >= 8
  assert set(cfg.natural.variants) == {'rmr', 'cswm', 'rmr_random_p'}
  assert cfg.abstract.hidden_size == 64 and cfg.probe.byte_probes and cfg.probe.ceiling_steps
  # Paired Table 2: every abstract model reads the same seeded store batches.
  assert cfg.replay.learner_source == 'store' and cfg.collect.store_all_episodes
  local = config_lib.load_atari_config(atari_configs.get_config('local'))
  assert local.env.repeat_action_probability == 0.0 and local.env.noop_max > 0
  assert local.natural.slot_embedding and local.probe.val_fraction > 0


def test_paper_variant_has_paper_scale():
  cfg = config_lib.load_atari_config(atari_configs.get_config('paper'))
  assert len(cfg.games) == 19
  assert cfg.heads.num_heads == 32 and cfg.heads.episodes_per_head == 3


def test_study_and_paper_heads_act_from_the_agent_stage_others_keep_random_heads():
  for variant in ('study', 'paper'):
    heads = config_lib.load_atari_config(atari_configs.get_config(variant)).heads
    assert (heads.base_policy, heads.checkpoint_path) == ('checkpoint', 'agent'), variant
  for variant in ('test', 'local'):
    heads = config_lib.load_atari_config(atari_configs.get_config(variant)).heads
    assert heads.base_policy == 'random', variant
  from rmr_dist import workdir as workdir_lib
  assert 'agent' in workdir_lib.ATARI_STAGE_NAMES
  assert 'agent' not in workdir_lib.ATARI_DEFAULT_STAGES  # Opt-in.


def test_unknown_key_names_it_and_lists_valid_keys():
  c = atari_configs.get_config('test').to_dict()
  c['heads']['num_headz'] = 3
  with pytest.raises(config_lib.ConfigError, match=r'config\.heads\.num_headz.*valid keys.*num_heads'):
    config_lib.load_atari_config(c)


def test_missing_key_is_reported():
  c = atari_configs.get_config('test').to_dict()
  del c['env']['frame_skip']
  with pytest.raises(config_lib.ConfigError, match=r'Missing.*config\.env\.frame_skip'):
    config_lib.load_atari_config(c)


def test_every_natural_loss_the_learner_has_is_a_valid_config_value():
  assert config_lib.NATURAL_LOSSES == natural_learning.LOSSES
  assert config_lib.OVER_MODELS == lockstep.OVER_MODELS


def test_one_episode_negatives_need_the_episode_store():
  c = atari_configs.get_config('test').to_dict()
  c['replay']['learner_source'] = 'reverb'  # (the test config reads the store)
  c['natural']['negatives'] = 'episode'
  with pytest.raises(config_lib.ConfigError, match=r"negatives='episode'.*learner_source='reverb'"):
    config_lib.load_atari_config(c)
  c['collect']['store_all_episodes'], c['replay']['learner_source'] = True, 'store'
  assert config_lib.load_atari_config(c).natural.negatives == 'episode'
  c['natural']['episode_window'] = c['natural']['batch_size'] - 1
  with pytest.raises(config_lib.ConfigError, match=r'episode_window=3.*>= batch_size=4'):
    config_lib.load_atari_config(c)
  c['natural']['episode_window'] = 16
  assert config_lib.load_atari_config(c).natural.episode_window == 16
  c['natural']['negatives'] = 'batch'
  with pytest.raises(config_lib.ConfigError, match=r"episode_window=16.*negatives='episode'"):
    config_lib.load_atari_config(c)


def test_frame_stacks_need_the_episode_store():
  c = atari_configs.get_config('test').to_dict()
  c['replay']['learner_source'] = 'reverb'  # (the test config reads the store)
  c['natural']['frame_stack'] = 2
  with pytest.raises(config_lib.ConfigError,
                     match=r"frame_stack=2 with .*learner_source='reverb'.*frame_stack=1"):
    config_lib.load_atari_config(c)
  c['collect']['store_all_episodes'], c['replay']['learner_source'] = True, 'store'
  assert config_lib.load_atari_config(c).natural.frame_stack == 2
  c['natural']['frame_stack'] = 0
  with pytest.raises(config_lib.ConfigError, match=r'frame_stack=0: expected an int >= 1'):
    config_lib.load_atari_config(c)


@pytest.mark.parametrize('section,key,value,pattern', [
    ('env', 'frame_skip', 2.5, r'config\.env\.frame_skip must be an int'),
    ('env', 'frame_skip', True, r'config\.env\.frame_skip must be an int'),
    ('heads', 'base_policy', 'agent57', r"base_policy='agent57'.*one of \('random', 'checkpoint'\)"),
    ('collect', 'val_fraction', 1.0, r'val_fraction=1\.0.*\(0, 1\)'),
    ('replay', 'server', 'remote', r"server='remote'"),
    ('replay', 'transitions_per_item', 0, r'config\.replay\.transitions_per_item=0.*\[1, 256\]'),
    ('heads', 'checkpoint_path', 3, r'checkpoint_path must be a str'),
    ('heads', 'min_persistence', 0.9,
     r'config\.heads\.min_persistence=0\.9.*\[0, max_persistence=0\.8\]'),
    ('env', 'noop_max', -1, r'config\.env\.noop_max=-1'),
    ('agent', 'action_set', 'legal', r"config\.agent\.action_set='legal'.*'full', 'minimal'"),
    ('natural', 'map_activation', 'relu', r"config\.natural\.map_activation='relu'"),
    ('natural', 'action_start', -1, r'config\.natural\.action_start=-1: expected an int in \[0'),
    ('natural', 'action_negatives', 2,
     r"config\.natural\.action_negatives=2: expected 0, or with an InfoNCE loss \(loss='hinge'\)"),
    ('env', 'frame_height', 20,
     r"config\.env\.frame_height=20: expected an int in \[36, 210\].*'small' trunk.*nearest "
     r'valid: 36'),
    ('env', 'frame_width', 30, r'config\.env\.frame_width=30: expected an int in \[36, 160\]'),
    ('natural', 'trunk', 'resnet', r"config\.natural\.trunk='resnet'.*'small', 'full'"),
    ('natural', 'readout', 'pixels', r"config\.natural\.readout='pixels'.*'latent', 'bits'"),
    ('natural', 'over_models', 'loop', r"config\.natural\.over_models='loop'.*'vmap', 'sequence'"),
    ('natural', 'variants', ('rmr', 'random'), r"config\.natural\.variants=.*'rmr_random_p'"),
    ('natural', 'loss', 'triplet',
     r"config\.natural\.loss='triplet'.*'hinge', 'infonce', 'slot_infonce'"),
    ('natural', 'negatives', 'hard', r"config\.natural\.negatives='hard'.*'batch', 'episode'"),
    ('natural', 'curve_steps', (0, 2), r'config\.natural\.curve_steps=\(0, 2\)'),
    ('natural', 'curve_steps', (4,), r'config\.natural\.curve_steps=\(4,\)'),
    ('probe', 'val_fraction', 0.9, r'config\.probe\.val_fraction=0\.9'),
    ('probe', 'patience', 0, r'config\.probe\.patience=0'),
    ('probe', 'max_components', -1, r'config\.probe\.max_components=-1'),
    ('agent', 'n_step', 0, r'config\.agent\.n_step=0.*\[1, 100\]'),
    ('agent', 'gamma', 1.5, r'config\.agent\.gamma=1\.5'),
    ('agent', 'epsilon_end', 2.0, r'config\.agent\.epsilon_end=2\.0.*epsilon_start'),
    ('agent', 'samples_per_insert', 0.0, r'config\.agent\.samples_per_insert=0\.0'),
    ('agent', 'error_buffer', 1.0, r'config\.agent\.error_buffer=1\.0.*samples_per_insert'),
    ('agent', 'min_replay_size', 5_000, r'config\.agent\.min_replay_size=5000'),
    ('agent', 'num_checkpoints', 1, r'config\.agent\.num_checkpoints=1'),
    ('agent', 'hidden_sizes', (), r'config\.agent\.hidden_sizes=\(\)'),
])
def test_wrong_type_or_value(section, key, value, pattern):
  c = atari_configs.get_config('test').to_dict()
  c[section][key] = value
  with pytest.raises(config_lib.ConfigError, match=pattern):
    config_lib.load_atari_config(c)


def test_unknown_game_lists_valid_games():
  c = atari_configs.get_config('test').to_dict()
  c['games'] = ('pong', 'pacmann')
  with pytest.raises(config_lib.ConfigError, match=r"Unknown game 'pacmann'.*ms_pacman"):
    config_lib.load_atari_config(c)


def test_checkpoint_policy_requires_path():
  c = atari_configs.get_config('test').to_dict()
  c['heads']['base_policy'] = 'checkpoint'
  with pytest.raises(config_lib.ConfigError, match='checkpoint_path'):
    config_lib.load_atari_config(c)


def test_unknown_variant():
  with pytest.raises(ValueError, match="'tset'.*test, local, study, gpu, paper"):
    atari_configs.get_config('tset')


def test_stages_validated_and_ordered():
  assert atari_program.check_stages(['collect']) == ['collect']
  with pytest.raises(config_lib.ConfigError, match=r"Unknown stage.*'trian'.*valid stages"):
    atari_program.check_stages(['collect', 'trian'])


def test_learner_group_fields():
  local = config_lib.load_atari_config(atari_configs.get_config('local')).ray
  assert (local.learner_num_gpus, local.learner_hosts) == (0.0, 1)  # Runs on this CPU.
  paper = config_lib.load_atari_config(atari_configs.get_config('paper')).ray
  assert paper.learner_num_gpus >= 1  # The paper config asks for accelerators.
  c = atari_configs.get_config('test').to_dict()
  for key in ('learner_num_cpus', 'learner_num_gpus', 'learner_max_restarts', 'learner_hosts'):
    del c['ray'][key]  # Optional: a config file without them gets the defaults.
  assert config_lib.load_atari_config(c).ray == config_lib.RayConfig(address='', num_cpus=2)


@pytest.mark.parametrize('key,value,pattern', [
    ('learner_num_cpus', 0.0, r'config\.ray\.learner_num_cpus=0\.0.*> 0'),
    ('learner_num_gpus', -1.0, r'config\.ray\.learner_num_gpus=-1\.0'),
    ('learner_max_restarts', -1, r'config\.ray\.learner_max_restarts=-1'),
    ('learner_hosts', 0, r'config\.ray\.learner_hosts=0'),
    ('learner_hosts', 3, r'config\.abstract\.batch_size=8.*multiple of ray\.learner_hosts=3'),
])
def test_bad_learner_group_fields(key, value, pattern):
  c = atari_configs.get_config('test').to_dict()
  c['ray'][key] = value
  with pytest.raises(config_lib.ConfigError, match=pattern):
    config_lib.load_atari_config(c)


@pytest.mark.parametrize('variant', balls_configs.VARIANTS)
def test_balls_variants_load(variant):
  cfg = config_lib.load_balls_config(balls_configs.get_config(variant))
  assert cfg.sim.num_balls >= 1 and cfg.natural.num_slots >= cfg.sim.num_balls


def test_balls_config_names_a_bad_value():
  c = balls_configs.get_config('test')
  c.natural.slot_init = 'random'
  with pytest.raises(config_lib.ConfigError, match=r"config.natural.slot_init='random'"):
    config_lib.load_balls_config(c)
  with pytest.raises(ValueError, match="Unknown balls config variant 'big'"):
    balls_configs.get_config('big')
  c = balls_configs.get_config('test')
  c.natural.autoencode_steps = c.natural.num_steps
  with pytest.raises(config_lib.ConfigError, match=r'natural.autoencode_steps=4.*< natural'):
    config_lib.load_balls_config(c)
  c = balls_configs.get_config('test')
  c.natural.processor_graph = 'balls'
  with pytest.raises(config_lib.ConfigError, match=r"processor_graph='balls'.*'objects'"):
    config_lib.load_balls_config(c)
  c = balls_configs.get_config('test')
  assert c.natural.readout_init == 'zeros' and c.natural.slot_latents == 'abstract_f'
  c.natural.slot_latents = 'projection'  # 'zeros' only with slot_latents='abstract_f'.
  with pytest.raises(config_lib.ConfigError, match=r"readout_init='zeros'.*abstract_f"):
    config_lib.load_balls_config(c)
  c.natural.readout_init = 'random'
  assert config_lib.load_balls_config(c).natural.slot_latents == 'projection'


def _leaves(tree, prefix=''):
  """{'a.b': value} for every leaf of a nested dict."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_leaves(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


@pytest.mark.parametrize('configs,load', [
    (atari_configs, config_lib.load_atari_config),
    (balls_configs, config_lib.load_balls_config),
], ids=['atari', 'balls'])
def test_config_file_is_a_valid_base_and_one_override_function_per_variant(configs, load):
  """Issue 34: `base()` validates on its own, each variant is one override function of it, and
  no base value is dead (overridden by every variant)."""
  overrides = configs._OVERRIDES  # pylint: disable=protected-access
  assert tuple(overrides) == configs.VARIANTS
  load(configs.base())
  base = _leaves(configs.base().to_dict())
  for variant, override in overrides.items():
    c = configs.base()
    override(c)
    assert c.to_dict() == configs.get_config(variant).to_dict(), variant
  variants = [_leaves(configs.get_config(v).to_dict()) for v in configs.VARIANTS]
  dead = sorted(k for k, value in base.items() if all(v[k] != value for v in variants))
  assert not dead, f'base values that every variant overrides: {dead}'


def test_no_ray_needs_the_episode_store_and_is_atari_only():
  """ray.address='none' (the learner stages in one process, stages.atari_in_process) reads
  the episode store: with Reverb as the learners' source it is refused, naming both values;
  the balls program refuses it."""
  c = atari_configs.get_config('local')
  c.ray.address = 'none'
  assert config_lib.load_atari_config(c).ray.address == config_lib.NO_RAY
  c.replay.learner_source = 'reverb'
  c.natural.negatives, c.natural.episode_window = 'batch', 0
  with pytest.raises(config_lib.ConfigError, match=(
      r"config.ray.address='none' with config.replay.learner_source='reverb'")):
    config_lib.load_atari_config(c)
  b = balls_configs.get_config('local')
  b.ray.address = 'none'
  with pytest.raises(config_lib.ConfigError, match=r"config.ray.address='none'.*local Ray"):
    config_lib.load_balls_config(b)
