"""Bouncing-balls evaluation (paper section 3): exact validation errors of the trained models.

* :func:`evaluate_abstract`: 1-step MSE over every validation window and the MSE at each step
  of an autoregressive rollout (``learning.balls_abstract.rollout``), with its controls:
  copy-last (the newest input state) and constant velocity (``x_t + k (x_t - x_{t-1})`` at
  rollout step k; exact except at bounces and collisions), scored on the same windows;
* :func:`evaluate_natural`: per-pixel next-frame MSE of one natural model, the FG-ARI of its
  slot masks against the true ball segmentation of the predicted frame, the mean entropy
  of its masks over slots (log K for uniform masks, 0 for one slot per pixel) and how far
  its ball slots' inferred positions are from the true ones (evaluation only: no learner
  reads true positions of frames, except the oracle's, which is given them);
* :func:`rendered_prediction_mse`: the next frame drawn by the exact renderer at the abstract
  model's predicted positions (and at constant velocity's): the frame error of a perfect
  encoder and decoder around the abstract model's dynamics;
* :func:`copy_last_frame_mse`: the no-learning baseline that predicts the newest input frame;
* :func:`outside_span_fraction` / :func:`latent_span`: how far a natural model's slot latents
  (P's inputs) lie from the span of the abstract f, where the frozen P was trained;
* :func:`natural_rollout`: an autoregressive frame rollout (with slot masks) for the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flax.linen as nn
import numpy as np

from rmr_dist.envs import balls as balls_env
from rmr_dist.evaluation import segmentation
from rmr_dist.learning import balls_abstract
from rmr_dist.envs import balls_trajectories


def evaluate_abstract(model: nn.Module, params: Any, data: balls_trajectories.TrajectorySet,
                      history: int, rollout_steps: int, batch_size: int) -> dict[str, Any]:
  """Exact validation errors over all windows and all rollout starts.

  Args:
    model: the abstract model.
    params: its params.
    data: the validation trajectories.
    history: T_hist.
    rollout_steps: R.
    batch_size: windows per forward pass.

  Returns:
    ``mse_1step`` (mean over every window, ball and coordinate), ``rollout_mse`` [R] (MSE at
    each rollout step over every start with R true future states), ``copy_last_mse_1step``
    (the control that predicts the newest input state), ``const_velocity_mse_1step`` and
    ``const_velocity_rollout_mse`` [R] (the control that extrapolates the last velocity, over
    the same windows and starts), ``n_windows``, ``n_rollouts``.
  """
  positions = data.positions  # [E, T, N, 2]
  num_episodes, length = positions.shape[:2]
  starts = length - history - rollout_steps + 1
  if starts < 1:
    raise ValueError(f'episode_frames={length} is too short for history={history} plus a '
                     f'{rollout_steps}-step rollout')
  total = data.window_count(history)
  se_sum, count = 0.0, 0
  for start in range(0, total, batch_size):
    w = data.windows(np.arange(start, min(start + batch_size, total)), history, frames=False)
    pred = np.asarray(balls_abstract.rollout(model, params, w['history'], 1))[:, 0]  # [b, N, 2]
    se_sum += float(np.sum(np.square(pred - w['target'], dtype=np.float64)))
    count += pred.size
  roll_se = np.zeros(rollout_steps)
  inputs = np.stack([positions[:, s:s + history] for s in range(starts)], 1)  # [E, S, h, N, 2]
  truth = np.stack([positions[:, s + history:s + history + rollout_steps]
                    for s in range(starts)], 1)  # [E, S, R, N, 2]
  inputs = inputs.reshape((-1,) + inputs.shape[2:])
  truth = truth.reshape((-1,) + truth.shape[2:])
  for start in range(0, len(inputs), batch_size):
    pred = np.asarray(balls_abstract.rollout(model, params, inputs[start:start + batch_size],
                                             rollout_steps))
    roll_se += np.sum(np.square(pred - truth[start:start + batch_size], dtype=np.float64),
                      axis=(0, 2, 3))
  per_step = roll_se / (len(inputs) * truth.shape[2] * truth.shape[3])
  last = positions[:, history - 1:-1]  # [E, T - history, N, 2] the newest input state
  copy_mse = float(np.mean(np.square(positions[:, history:] - last, dtype=np.float64)))
  velocity = last - positions[:, history - 2:-2]  # [E, T - history, N, 2]
  const_mse = float(np.mean(np.square(positions[:, history:] - (last + velocity),
                                      dtype=np.float64)))
  steps = np.arange(1, rollout_steps + 1)[None, :, None, None]  # [1, R, 1, 1]
  extrapolated = (inputs[:, -1:] + steps * (inputs[:, -1:] - inputs[:, -2:-1]))  # [S', R, N, 2]
  const_roll = np.mean(np.square(extrapolated - truth, dtype=np.float64), axis=(0, 2, 3))
  return {'mse_1step': se_sum / count, 'rollout_mse': per_step.tolist(),
          'copy_last_mse_1step': copy_mse, 'const_velocity_mse_1step': const_mse,
          'const_velocity_rollout_mse': const_roll.tolist(),
          'n_windows': total, 'n_rollouts': int(len(inputs)),
          'n_episodes': int(num_episodes)}


def evaluate_natural(predict_fn: Callable[[Any, np.ndarray], dict], params: Any,
                     data: balls_trajectories.TrajectorySet, history: int, indices: np.ndarray,
                     batch_size: int, image_size: int | None = None,
                     input_key: str = 'frames') -> dict[str, float]:
  """One natural model's next-frame predictions on the windows ``indices``.

  ``input_key``: what ``predict_fn`` reads of each window: 'frames', or 'history' (the true
  positions: the oracle, ``networks.balls.BallsOracleModel``).

  Returns:
    ``mse``: per-pixel MSE with frames in [0, 1]; ``fg_ari``: mean FG-ARI of the slot masks
    against the true segmentation of the target frame (``envs.balls.render_segmentation`` of
    its positions; images with fewer than 2 ball pixels left out); ``mask_entropy``: mean over
    pixels of the masks' entropy over slots, in nats; with slot positions (f~'s,
    ``slot_positions``), ``position_rmse``: per coordinate, the RMS distance in box units
    from each true ball in the last input frame to the nearest slot position, the background
    slot (the most attention) left out.
  """
  size = image_size or data.frames.shape[2]
  per = data.positions.shape[1] - history
  se_sum, count, aris, entropies, position_se = 0.0, 0, [], [], []
  for index, n in fixed_size_chunks(indices, batch_size):
    w, out = _predict_rows(predict_fn, params, data, history, index, n, input_key)
    index = index[:n]
    if 'slot_positions' in out:
      position_se.append(nearest_slot_sq_error(
          np.asarray(out['slot_positions'][:, -1]), np.asarray(out['attention'][:, -1]),
          w['history'][:, -1]))
    recon = np.asarray(out['recon'], np.float64)  # [b, H, W, 3]
    se_sum += float(np.sum(np.square(recon - w['target_frame'] / 255.0)))
    count += recon.size
    masks = np.asarray(out['masks'][..., 0], np.float64)  # [b, K, H, W]
    radii = data.radii[index // per]  # [b, N]
    truth = np.stack([balls_env.render_segmentation(p, r, size)
                      for p, r in zip(w['target'], radii)])  # [b, H, W]
    aris.append(segmentation.fg_ari(truth, masks))
    entropy = -np.sum(masks * np.log(np.clip(masks, 1e-12, None)), axis=1)  # [b, H, W]
    entropies.append((float(entropy.sum()), entropy.size))
  aris = np.concatenate(aris)
  scores = {'mse': se_sum / count,
            'fg_ari': float(np.nanmean(aris)) if np.isfinite(aris).any() else float('nan'),
            'mask_entropy': sum(e for e, _ in entropies) / sum(n for _, n in entropies)}
  if position_se:
    scores['position_rmse'] = float(np.sqrt(np.mean(np.concatenate(position_se)) / 2))
  return scores


def fixed_size_chunks(indices: np.ndarray, batch_size: int
                      ) -> Iterator[tuple[np.ndarray, int]]:
  """``(chunk, n)``: ``indices`` in chunks of ``min(batch_size, len(indices))``, the last one
  padded with copies of its final index, ``n`` the chunk's real rows; one input shape per
  call, so a jitted predict compiles once rather than again for the remainder."""
  size = max(1, min(batch_size, len(indices)))
  for start in range(0, len(indices), size):
    chunk = np.asarray(indices[start:start + size])
    n = len(chunk)
    yield np.concatenate([chunk, np.repeat(chunk[-1:], size - n)]), n


def _predict_rows(predict_fn: Callable[[Any, np.ndarray], dict], params: Any,
                  data: balls_trajectories.TrajectorySet, history: int, index: np.ndarray,
                  n: int, input_key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """The windows ``index`` and ``predict_fn``'s outputs on them, both cut to the first ``n``
  rows (the rest is :func:`fixed_size_chunks`'s padding)."""
  w = data.windows(index, history)
  out = predict_fn(params, w[input_key])
  return ({k: v[:n] for k, v in w.items()},
          {k: np.asarray(v)[:n] for k, v in out.items()})


def nearest_slot_sq_error(slot_positions: np.ndarray, attention: np.ndarray,
                          true_positions: np.ndarray) -> np.ndarray:
  """Squared distance from each true ball to the nearest non-background slot position.

  Args:
    slot_positions: [B, K, 2] the slots' positions in one image.
    attention: [B, K, L] their attention in it; the slot with the most is the background.
    true_positions: [B, N, 2] the balls' true positions in it.

  Returns:
    [B * N] squared distances (box units squared).
  """
  mass = np.asarray(attention, np.float64).sum(-1)  # [B, K]
  is_background = np.arange(mass.shape[1])[None] == np.argmax(mass, axis=1)[:, None]
  d2 = np.sum(np.square(np.asarray(true_positions, np.float64)[:, :, None]
                        - np.asarray(slot_positions, np.float64)[:, None]), -1)  # [B, N, K]
  d2 = np.where(is_background[:, None], np.inf, d2)
  return d2.min(-1).reshape(-1)


def rendered_prediction_mse(model: nn.Module, params: Any, data: balls_trajectories.TrajectorySet,
                            history: int, indices: np.ndarray, batch_size: int,
                            image_size: int) -> dict[str, float]:
  """Next-frame MSE of frames drawn by the exact renderer at predicted positions.

  A reference with a perfect encoder (the true positions) and a perfect decoder (the
  renderer): the frame error left by the dynamics alone.

  Args:
    model, params: the abstract model and its params.
    data: the validation trajectories.
    history: T_hist.
    indices: the windows.
    batch_size: windows per forward pass.
    image_size: frame side.

  Returns:
    Per-pixel MSE (frames in [0, 1]) of the frame rendered at ``abstract`` (the abstract
    model's next positions), ``const_velocity`` (the last velocity extrapolated) and
    ``true`` (the true next positions: the renderer against the stored frames, ~0).
  """
  per = data.positions.shape[1] - history
  sums = {'abstract': 0.0, 'const_velocity': 0.0, 'true': 0.0}
  count = 0
  for start in range(0, len(indices), batch_size):
    index = np.asarray(indices[start:start + batch_size])
    w = data.windows(index, history)
    radii = data.radii[index // per]  # [b, N]
    predicted = {
        'abstract': np.asarray(balls_abstract.rollout(model, params, w['history'], 1))[:, 0],
        'const_velocity': 2 * w['history'][:, -1] - w['history'][:, -2],
        'true': w['target']}  # each [b, N, 2]
    target = w['target_frame'].astype(np.float64) / 255.0  # [b, H, W, 3]
    for name, positions in predicted.items():
      frames = np.stack([balls_env.render_frames(p, r, image_size)
                         for p, r in zip(positions, radii)]).astype(np.float64) / 255.0
      sums[name] += float(np.sum(np.square(frames - target)))
    count += target.size
  return {name: total / count for name, total in sums.items()}


def copy_last_frame_mse(data: balls_trajectories.TrajectorySet, history: int,
                        indices: np.ndarray) -> float:
  """Per-pixel MSE of predicting the newest input frame as the next (a no-learning baseline)."""
  w = data.windows(indices, history)
  diff = w['frames'][:, -1].astype(np.float64) - w['target_frame']
  return float(np.mean(np.square(diff / 255.0)))


def outside_span_fraction(latents: np.ndarray, kernel: np.ndarray, bias: np.ndarray
                          ) -> np.ndarray:
  """The fraction of each latent's offset from ``bias`` outside the row span of ``kernel``.

  The abstract f is ``z = h @ kernel + bias`` (h the F history features of a ball), so every
  latent the abstract P saw in training lies in that affine F-dim subspace of R^D.

  Args:
    latents: [..., D].
    kernel: [F, D] the abstract f's kernel.
    bias: [D] its bias.

  Returns:
    [...] in [0, 1]: 0 on the subspace; about 1 - F/D for a random direction.
  """
  basis, _ = np.linalg.qr(np.asarray(kernel, np.float64).T)  # [D, F] orthonormal
  offset = np.asarray(latents, np.float64) - np.asarray(bias, np.float64)  # [..., D]
  outside = offset - (offset @ basis) @ basis.T
  return np.sum(outside**2, axis=-1) / np.maximum(np.sum(offset**2, axis=-1), 1e-30)


def latent_span(predict_fn: Callable[[Any, np.ndarray], dict], params: Any,
                data: balls_trajectories.TrajectorySet, history: int, indices: np.ndarray,
                batch_size: int, kernel: np.ndarray, bias: np.ndarray) -> dict[str, float]:
  """Mean :func:`outside_span_fraction` of one natural model's P inputs, ball slots and
  background slot apart (per window, the background slot is the one whose mask covers the
  most pixels).

  Returns:
    ``{'ball_slots': float, 'background_slot': float}``.
  """
  balls, background = [], []
  for index, n in fixed_size_chunks(indices, batch_size):
    _, out = _predict_rows(predict_fn, params, data, history, index, n, 'frames')
    fraction = outside_span_fraction(np.asarray(out['latents']), kernel, bias)  # [b, K]
    area = np.asarray(out['masks'], np.float64).sum(axis=(2, 3, 4))  # [b, K]
    is_background = np.arange(area.shape[1])[None] == np.argmax(area, axis=1)[:, None]
    background.append(fraction[is_background])
    balls.append(fraction[~is_background])
  return {'ball_slots': float(np.mean(np.concatenate(balls))),
          'background_slot': float(np.mean(np.concatenate(background)))}


def natural_rollout(predict_fn: Callable[[Any, np.ndarray], dict], params: Any,
                    frames: np.ndarray, steps: int) -> dict[str, np.ndarray]:
  """Autoregressive frame rollout from one true window (predictions fed back as inputs).

  Args:
    predict_fn: from ``learning.balls_natural.make_predict_fn``.
    params: one model's params.
    frames: [T_hist, H, W, 3] uint8, the true input frames.
    steps: predictions to make.

  Returns:
    ``frames`` [steps, H, W, 3] uint8 predictions and ``masks`` [steps, K, H, W] float32.
  """
  window = np.asarray(frames)[None]  # [1, T_hist, H, W, 3]
  preds, masks = [], []
  for _ in range(steps):
    out = predict_fn(params, window)
    frame = np.clip(np.asarray(out['recon'][0]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    preds.append(frame)
    masks.append(np.asarray(out['masks'][0, ..., 0]))
    window = np.concatenate([window[:, 1:], frame[None, None]], axis=1)
  return {'frames': np.stack(preds), 'masks': np.stack(masks)}
