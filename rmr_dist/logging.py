"""TensorBoard logging through tensorboardX behind a tiny interface.

One run directory per job (`<workdir>/tb`); tags are namespaced by role:
`collector/...`, `replay/...`, `abstract/<game>/<model>/...`, `natural/...`, `eval/...`.
Scalars, text (tables, configs) and images (report figures).

tensorboardX appends to an event file as it goes, which an object store cannot do: with an
object-store work directory (`s3://...`) each Logger writes its event files into a local temp
directory of its process and copies them whole to `<logdir>` on `flush()` and `close()`
(`rmr_dist.storage.upload_tree`).
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Callable, Mapping

import numpy as np
import tensorboardX

from rmr_dist import storage


def format_duration(seconds: float) -> str:
  """A compact duration for status lines: '42s', '3m05s', '2h07m'."""
  seconds = max(int(round(seconds)), 0)
  if seconds < 60:
    return f'{seconds}s'
  if seconds < 3600:
    return f'{seconds // 60}m{seconds % 60:02d}s'
  return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'


LogFn = Callable[[Mapping[str, float], int], None]
_MODEL_KEY = re.compile(r'^(?P<variant>[a-z_]+)/seed_(?P<seed>\d+)/(?P<tag>.+)$')


def with_prefix(log_fn: LogFn | None, prefix: str) -> LogFn | None:
  """`log_fn` with `prefix` put before every tag (None stays None)."""
  if log_fn is None:
    return None
  return lambda scalars, step: log_fn({prefix + k: v for k, v in scalars.items()}, step)


def model_run(key: str) -> tuple[str, str] | None:
  """('<variant>/seed_<s>', tag) of a lockstep model's key '<variant>/seed_<s>/<tag>', else None.

  The lockstep learners report '<variant>/seed_<s>/loss' etc.; `Logger.scalars` writes those
  into a run directory per model (`<logdir>/<variant>/seed_<s>`) under the bare tag, so one
  TensorBoard chart overlays every variant and seed.
  """
  match = _MODEL_KEY.match(key)
  if match is None:
    return None
  return f'{match["variant"]}/seed_{match["seed"]}', match['tag']


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
    self._flush_secs, self._suffix = flush_secs, filename_suffix
    # An object store: events go to a local directory, copied to `logdir` on flush / close.
    self._local = tempfile.mkdtemp(prefix='rmr-tb-') if storage.is_remote(logdir) else None
    self._writer = tensorboardX.SummaryWriter(logdir=self._local or logdir, flush_secs=flush_secs,
                                              filename_suffix=filename_suffix)
    self._runs: dict[str, Logger] = {}

  def run(self, name: str) -> Logger:
    """The logger of the sub-run `<logdir>/<name>` (one per lockstep model)."""
    if name not in self._runs:
      self._runs[name] = Logger(f'{self.logdir}/{name}', self._flush_secs, self._suffix)
    return self._runs[name]

  def scalars(self, values: Mapping[str, float], step: int) -> None:
    """Logs each `tag: value` at `step`.

    A tag that embeds a lockstep model ('natural/pong/f100/rmr/seed_0/loss' or
    'rmr/seed_0/loss') goes to that model's run directory without the model part
    ('natural/pong/f100/loss' in run 'rmr/seed_0'), so the models overlay on one chart.
    """
    for tag, value in values.items():
      prefix, found = '', None
      parts = tag.split('/')
      for i in range(len(parts) - 2):
        found = model_run('/'.join(parts[i:]))
        if found is not None:
          prefix = '/'.join(parts[:i] + [''])
          break
      if found is None:
        self._writer.add_scalar(tag, float(value), global_step=step)
      else:
        run, rest = found
        self.run(run).scalars({prefix + rest: value}, step)

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
      with Image.open(io.BytesIO(storage.read_bytes(image))) as img:
        image = np.asarray(img.convert('RGB'))  # [H, W, 3] uint8
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (3, 4):
      raise ValueError(f'Logger.image({tag!r}): expected a PNG path or an [H, W, 3] uint8 '
                       f'array, got {image.dtype} {image.shape}')
    self._writer.add_image(tag, image[..., :3], global_step=step, dataformats='HWC')

  def flush(self) -> None:
    self._writer.flush()
    self._upload()
    for run in self._runs.values():
      run.flush()

  def close(self) -> None:
    self._writer.close()
    self._upload()
    if self._local is not None:
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.rmtree(self._local, ignore_errors=True)
    for run in self._runs.values():
      run.close()

  def _upload(self) -> None:
    if self._local is not None:
      storage.upload_tree(self._local, self.logdir)
