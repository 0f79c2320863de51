"""Replay counters for TensorBoard: size, episodes and insert / sample rates of every table.

Reverb 0.14's `Client.server_info()` gives, per table, `current_size`, `num_episodes` and
`rate_limiter_info.{insert,sample}_stats.completed` (cumulative inserts and samples since the
server started). `ReplayMonitor.poll()` reads every server of a (possibly sharded) replay and
turns the cumulative counts into rates since the previous poll; `start()` polls in a background
thread so the counters cover every stage (collector inserts, learner samples) without the
stages having to call it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable


class ReplayMonitor:
  """Polls the Reverb server(s) at `addresses` for per-table counters.

  Args:
    addresses: 'host:port' of every server (duplicates are read once).
  """

  def __init__(self, addresses: Iterable[str]):
    import reverb  # pylint: disable=g-import-not-at-top
    self._clients = [reverb.Client(a) for a in sorted(set(addresses))]
    self._last: dict[str, tuple[int, int]] | None = None
    self._last_time = 0.0
    self._start = time.monotonic()
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None
    self._poll_counts()  # Baseline: rates are since construction.

  def _poll_counts(self) -> dict[str, tuple[int, int, int, int]]:
    """{table: (current_size, num_episodes, inserts, samples)} over all servers."""
    counts = {}
    for client in self._clients:
      for name, info in client.server_info(timeout=10).items():
        limiter = info.rate_limiter_info
        counts[name] = (info.current_size, info.num_episodes,
                        limiter.insert_stats.completed, limiter.sample_stats.completed)
    now = time.monotonic()
    if self._last is None:
      self._last, self._last_time = {k: v[2:] for k, v in counts.items()}, now
    return counts

  def poll(self) -> dict[str, float]:
    """Reads the servers; returns `replay/<table>/{size,episodes,inserts,samples,
    inserts_per_s,samples_per_s}` (rates over the time since the previous poll)."""
    with self._lock:
      previous, previous_time = self._last, self._last_time
      counts = self._poll_counts()
      now = time.monotonic()
      seconds = max(now - previous_time, 1e-9)
      scalars = {}
      for name, (size, episodes, inserts, samples) in counts.items():
        last_inserts, last_samples = previous.get(name, (0, 0))
        prefix = f'replay/{name}/'
        scalars.update({prefix + 'size': size, prefix + 'episodes': episodes,
                        prefix + 'inserts': inserts, prefix + 'samples': samples,
                        prefix + 'inserts_per_s': (inserts - last_inserts) / seconds,
                        prefix + 'samples_per_s': (samples - last_samples) / seconds})
      self._last = {k: v[2:] for k, v in counts.items()}
      self._last_time = now
      return scalars

  def seconds(self) -> int:
    """Whole seconds since the monitor started (the TensorBoard step of `start`'s logs)."""
    return int(time.monotonic() - self._start)

  def start(self, log_fn: Callable[[dict[str, float], int], None], interval_s: float) -> None:
    """Calls `log_fn(poll(), seconds())` every `interval_s` in a daemon thread until `stop`."""

    def loop():
      while not self._stop.wait(interval_s):
        try:
          log_fn(self.poll(), self.seconds())
        except Exception:  # pylint: disable=broad-except
          return  # The servers went away (shutdown); monitoring is best effort.

    self._thread = threading.Thread(target=loop, daemon=True, name='replay-monitor')
    self._thread.start()

  def stop(self, log_fn: Callable[[dict[str, float], int], None] | None = None) -> None:
    """Stops the thread; with `log_fn`, logs one last poll (so short runs get counters too)."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    if log_fn is not None:
      log_fn(self.poll(), self.seconds())
