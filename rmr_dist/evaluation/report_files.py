"""The report files both programs write: CSV text and PNG figures (atomically)."""

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
