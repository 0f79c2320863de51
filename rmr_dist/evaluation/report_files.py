"""The report files both programs write: CSV text, PNG figures (atomically) and the shared
results.json's merged sections."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rmr_dist import storage


def save_figure(fig: Figure, path: str) -> None:
  """Renders ``fig`` to PNG atomically (`rmr_dist.storage.write_with`)."""
  FigureCanvasAgg(fig)
  storage.write_with(path, lambda f: fig.savefig(f, format='png', dpi=120, bbox_inches='tight'))


def csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
  """``rows`` as CSV with a header of ``columns`` (other keys left out)."""
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=columns, extrasaction='ignore', lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  return buf.getvalue()


def merge_results(results: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
  """``results`` (a report's results.json) updated with ``extra``, merging a section that is a
  dict in both (e.g. 'fingerprints': each table adds its own key) instead of replacing it."""
  for key, value in (extra or {}).items():
    if isinstance(value, dict) and isinstance(results.get(key), dict):
      results[key] = {**results[key], **value}
    else:
      results[key] = value
  return results
