"""Tests for rmr_dist.evaluation.atari_latent_span: the share outside the abstract f's span."""

import numpy as np

from rmr_dist.evaluation import atari_latent_span


def _encoder(rng, slots=3, size=16):
  return {'projection': {'kernel': rng.normal(size=(8, size)), 'bias': rng.normal(size=size)},
          'slot_embedding': rng.normal(size=(slots, size))}


def test_abstract_latents_are_inside_and_random_directions_mostly_outside():
  rng = np.random.default_rng(0)
  f = _encoder(rng)
  bits = rng.integers(0, 2, (50, 3, 8)).astype(np.float64)
  inside = bits @ f['projection']['kernel'] + f['projection']['bias'] + f['slot_embedding']
  assert atari_latent_span.outside_span_share(inside, f) < 1e-12
  # A direction orthogonal to the kernel rows: all of it outside.
  null = np.linalg.svd(f['projection']['kernel'])[2][-1]  # [16], orthogonal to rowspan(W)
  base = f['projection']['bias'] + f['slot_embedding']  # [3, 16]
  assert abs(atari_latent_span.outside_span_share(base + 5.0 * null + 0 * inside, f) - 1.0) < 1e-9
  # Pooled: an equal-norm mix of an inside and an outside offset is half outside.
  w = f['projection']['kernel'][0]
  mixed = np.stack([base + w, base + np.linalg.norm(w) * null])  # [2, 3, 16]
  assert abs(atari_latent_span.outside_span_share(mixed, f) - 0.5) < 1e-9
  # Random offsets: about 1 - 8/16 outside.
  random = rng.normal(size=(2000, 3, 16)) + f['projection']['bias'] + f['slot_embedding']
  assert abs(atari_latent_span.outside_span_share(random, f) - 0.5) < 0.02
