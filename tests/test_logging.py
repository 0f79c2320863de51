"""Tests for rmr_dist.logging: scalars, text and images land in the TensorBoard run directory.

Event files are read back with TensorBoard's own reader (EventAccumulator).
"""

import io

import numpy as np
import pytest
from PIL import Image

from rmr_dist import logging as logging_lib


def read_events(logdir: str):
  """TensorBoard's view of `logdir`: an EventAccumulator with everything loaded."""
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(logdir, size_guidance={
      event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0})
  acc.Reload()
  return acc


def test_image_from_png_path_and_array(tmp_path):
  # A 5x7 PNG with an alpha channel, and a 4x6 RGB array with known pixels.
  rgba = np.zeros((5, 7, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 200, 255
  png = str(tmp_path / 'figure.png')
  Image.fromarray(rgba, 'RGBA').save(png)
  array = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)

  logger = logging_lib.Logger(str(tmp_path / 'tb'))
  logger.image('eval/figure', png, step=3)
  logger.image('eval/array', array)
  logger.scalars({'collector/steps_per_s': 12.5}, step=7)
  logger.close()

  events = read_events(str(tmp_path / 'tb'))
  assert set(events.Tags()['images']) == {'eval/figure', 'eval/array'}
  (figure,) = events.Images('eval/figure')
  assert (figure.step, figure.height, figure.width) == (3, 5, 7)
  decoded = np.asarray(Image.open(io.BytesIO(figure.encoded_image_string)).convert('RGB'))
  assert (decoded == [200, 0, 0]).all()
  (logged,) = events.Images('eval/array')
  decoded = np.asarray(Image.open(io.BytesIO(logged.encoded_image_string)).convert('RGB'))
  np.testing.assert_array_equal(decoded, array)  # PNG is lossless.
  (scalar,) = events.Scalars('collector/steps_per_s')
  assert (scalar.step, scalar.value) == (7, 12.5)


def test_image_rejects_a_non_image(tmp_path):
  logger = logging_lib.Logger(str(tmp_path / 'tb'))
  with pytest.raises(ValueError, match='uint8'):
    logger.image('eval/bad', np.zeros((4, 6), np.float32))
  logger.close()


@pytest.mark.parametrize('seconds,text', [(0, '0s'), (42.4, '42s'), (185, '3m05s'),
                                          (7620, '2h07m')])
def test_format_duration(seconds, text):
  assert logging_lib.format_duration(seconds) == text


def test_lockstep_model_scalars_go_to_one_run_per_model(tmp_path):
  logger = logging_lib.Logger(str(tmp_path))
  logger.scalars({'natural/pong/f100/rmr/seed_1/loss': 0.5,
                  'natural/pong/f100/end_to_end/seed_0/loss': 0.25,
                  'natural/pong/f100/steps_per_s': 3.0}, step=7)
  logger.close()
  main = read_events(str(tmp_path))
  assert main.Tags()['scalars'] == ['natural/pong/f100/steps_per_s']
  for run, value in (('rmr/seed_1', 0.5), ('end_to_end/seed_0', 0.25)):
    events = read_events(str(tmp_path / run)).Scalars('natural/pong/f100/loss')
    assert [(e.step, e.value) for e in events] == [(7, value)]
  assert logging_lib.model_run('rmr/seed_12/eval/bit_f1') == ('rmr/seed_12', 'eval/bit_f1')
  assert logging_lib.model_run('abstract/pong/mpnn/loss') is None
