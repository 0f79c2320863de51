"""The tools' --set overrides: typed values, and bad keys refused naming them."""

import pytest

from configs import balls as balls_configs
from rmr_dist import config as config_lib
from rmr_dist.tools import overrides


def _config_dict():
  return config_lib.to_dict(config_lib.load_balls_config(balls_configs.get_config('test')))


def test_values_take_the_field_s_type():
  out = overrides.apply(_config_dict(), ['natural.learning_rate=1', 'natural.slot_init=sampled',
                                         "natural.variants=('rmr',)"], config_lib.BallsConfig)
  assert out['natural']['learning_rate'] == 1.0 and isinstance(out['natural']['learning_rate'],
                                                                float)
  assert out['natural']['slot_init'] == 'sampled' and out['natural']['variants'] == ('rmr',)
  config = config_lib.load_balls_config(out)
  assert config.natural.variants == ('rmr',)


@pytest.mark.parametrize('item', ['natural.no_such_key=1', 'nosection.x=1', 'natural.seed'])
def test_bad_items_are_refused_by_name(item):
  with pytest.raises(config_lib.ConfigError, match=f"--set '{item}'"):
    overrides.apply(_config_dict(), [item], config_lib.BallsConfig)


def test_a_directory_without_a_run_is_named(tmp_path):
  with pytest.raises(config_lib.ConfigError, match=f'--workdir={tmp_path} holds no run'):
    overrides.read_config_dict(str(tmp_path))
