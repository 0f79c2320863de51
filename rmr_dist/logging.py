"""TensorBoard logging through tensorboardX behind a tiny interface.

One run directory per job (`<workdir>/tb`); tags are namespaced by role:
`collector/...`, `replay/...`, `abstract/<game>/<model>/...`, `natural/...`, `eval/...`.
Scalars, text (tables, configs) and images (report figures).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorboardX


def format_duration(seconds: float) -> str:
  """A compact duration for status lines: '42s', '3m05s', '2h07m'."""
  seconds = max(int(round(seconds)), 0)
  if seconds < 60:
    return f'{seconds}s'
  if seconds < 3600:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


class Logger:
  """Writes scalars and text to one TensorBoard run directory.

  Args:
    logdir: the run directory (created if missing).
    flush_secs: how often tensorboardX flushes events to disk.
    filename_suffix: appended to the event file's name. Several processes (the driver, each
      learner group) write into the same run directory, each to its own file; TensorBoard
      merges them.
  """

  def __init__(self, logdir: str, flush_secs: int = 10, filename_suffix: str = ''):
    self.logdir = logdir
    self._writer = tensorboardX.SummaryWriter(logdir=logdir, flush_secs=flush_secs,
                                              filename_suffix=filename_suffix)

  def scalars(self, values: Mapping[str, float], step: int) -> None:
    """Logs each `tag: value` at `step`."""
    for tag, value in values.items():
      self._writer.add_scalar(tag, float(value), global_step=step)

  def text(self, tag: str, text: str, step: int = 0) -> None:
    """Logs markdown text (configs, tables)."""
    self._writer.add_text(tag, text, global_step=step)

  def image(self, tag: str, image: str | np.ndarray, step: int = 0) -> None:
    """Logs an image: a PNG file's path (report figures) or a [H, W, 3] uint8 array.

    Args:
      tag: e.g. 'eval/data_efficiency'.
      image: path of a PNG (RGBA is flattened to RGB) or an [H, W, 3] (or [H, W, 4]) uint8
        array.
      step: the global step.
    """
    if isinstance(image, str):
      from PIL import Image  # pylint: disable=g-import-not-at-top
      with Image.open(image) as img:
        image = np.asarray(img.convert('RGB'))  # [H, W, 3] uint8
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (3, 4):
      raise ValueError(f'Logger.image({tag!r}): expected a PNG path or an [H, W, 3] uint8 '
                       f'array, got {image.dtype} {image.shape}')
    self._writer.add_image(tag, image[..., :3], global_step=step, dataformats='HWC')

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()
