"""Object-discovery scores: the adjusted Rand index over foreground pixels (FG-ARI).

As in Slot Attention (Locatello et al., 2020) and MONet / IODINE before it: each pixel gets the
slot whose mask is largest there, each foreground pixel of the true segmentation the object that
covers it, and the ARI between the two partitions is taken over the foreground pixels only (the
background is left out, so a model is not rewarded for giving it a slot). 1 is a perfect
segmentation up to relabelling; a random or uniform one scores about 0.
"""

from __future__ import annotations

import numpy as np


def adjusted_rand_index(true_ids: np.ndarray, pred_ids: np.ndarray) -> float:
  """ARI between two labellings of the same items (Hubert & Arabie, 1985).

  Args:
    true_ids: [P] int labels.
    pred_ids: [P] int labels.

  Returns:
    The ARI; 1.0 when both labellings put every item in one cluster (nothing to tell apart),
    nan for fewer than 2 items.
  """
  true_ids, pred_ids = np.asarray(true_ids).ravel(), np.asarray(pred_ids).ravel()
  n = true_ids.size
  if n < 2:
    return float('nan')
  _, t = np.unique(true_ids, return_inverse=True)
  _, p = np.unique(pred_ids, return_inverse=True)
  table = np.zeros((t.max() + 1, p.max() + 1), np.int64)  # contingency [true, pred]
  np.add.at(table, (t, p), 1)
  pairs = lambda x: x * (x - 1) / 2.0
  index = pairs(table).sum()
  rows, cols = pairs(table.sum(1)).sum(), pairs(table.sum(0)).sum()
  expected = rows * cols / pairs(n)
  best = (rows + cols) / 2.0
  if best == expected:  # Both labellings are a single cluster (or both all singletons).
    return 1.0
  return float((index - expected) / (best - expected))


def fg_ari(true_segmentation: np.ndarray, masks: np.ndarray, background: int = 0) -> np.ndarray:
  """FG-ARI of each image: predicted slot masks against the true object segmentation.

  Args:
    true_segmentation: [B, H, W] int, `background` where no object is, else an object id.
    masks: [B, K, H, W] slot masks (any non-negative weights; the argmax over K is used).
    background: the id of background pixels in `true_segmentation`.

  Returns:
    [B] FG-ARI per image; nan for an image with fewer than 2 foreground pixels.
  """
  true_segmentation = np.asarray(true_segmentation)
  pred = np.argmax(np.asarray(masks), axis=1)  # [B, H, W]
  out = np.full(true_segmentation.shape[0], np.nan)
  for i, (seg, slots) in enumerate(zip(true_segmentation, pred)):
    fg = seg != background
    if fg.sum() >= 2:
      out[i] = adjusted_rand_index(seg[fg], slots[fg])
  return out
