"""TensorBoard logging through tensorboardX behind a tiny interface.

One run directory per job (`<workdir>/tb`); tags are namespaced by role:
`collector/...`, `replay/...`, `abstract/<game>/<model>/...`, `natural/...`, `eval/...`.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorboardX


class Logger:
  """Writes scalars and text to one TensorBoard run directory.

  Args:
    logdir: the run directory (created if missing).
    flush_secs: how often tensorboardX flushes events to disk.
  """

  def __init__(self, logdir: str, flush_secs: int = 10):
    self.logdir = logdir
    self._writer = tensorboardX.SummaryWriter(logdir=logdir, flush_secs=flush_secs)

  def scalars(self, values: Mapping[str, float], step: int) -> None:
    """Logs each `tag: value` at `step`."""
    for tag, value in values.items():
      self._writer.add_scalar(tag, float(value), global_step=step)

  def text(self, tag: str, text: str, step: int = 0) -> None:
    """Logs markdown text (configs, tables)."""
    self._writer.add_text(tag, text, global_step=step)

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()
