"""Where a natural encoder's slot latents lie against the span the frozen processor was trained on.

The abstract Atari encoder f maps a slot's 8 RAM bits to ``z_k = bits_k @ W + b + e_k`` (W
[8, H] shared by the slots, b [H] its bias, e_k [H] slot k's embedding;
``networks.atari_abstract.RamEncoder``), so every input the pre-trained P saw in training lies, for
slot k, in the affine 8-dimensional subspace ``e_k + b + rowspan(W)`` of R^H. If f~'s latents
lie far outside it, P is evaluated where it was never trained and RMR can only use it as a
fixed random map. :func:`outside_span_share` measures that: 0 on the subspace, about
``1 - 8 / H`` for a random direction.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def outside_span_share(latents: np.ndarray, abstract_encoder: Any) -> float:
  """The share of f~'s slot latents' offsets from ``e_k + b`` that lies outside ``rowspan(W)``,
  pooled over frames and slots (squared norms summed before the ratio, so a latent sitting
  on ``e_k + b`` itself weighs nothing).

  Args:
    latents: [N, S, H] slot latents of N frames (f~'s output).
    abstract_encoder: the abstract model's ``params['encoder']``: ``projection`` {``kernel``
      [8, H], ``bias`` [H]} and ``slot_embedding`` [S, H] (``checkpointing.
      restore_abstract_encoder``).

  Returns:
    ``sum |offset - proj(offset)|^2 / sum |offset|^2`` in [0, 1].
  """
  kernel = np.asarray(abstract_encoder['projection']['kernel'], np.float64)  # [8, H]
  bias = np.asarray(abstract_encoder['projection']['bias'], np.float64)  # [H]
  embedding = np.asarray(abstract_encoder.get('slot_embedding', 0.0), np.float64)  # [S, H]
  basis, _ = np.linalg.qr(kernel.T)  # [H, 8] orthonormal
  offset = np.asarray(latents, np.float64) - bias - embedding  # [N, S, H]
  outside = offset - (offset @ basis) @ basis.T  # [N, S, H]
  return float(np.sum(outside ** 2) / max(float(np.sum(offset ** 2)), 1e-30))
