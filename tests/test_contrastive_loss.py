"""Tests for the C-SWM contrastive loss in rmr_dist.losses, on tiny hand-made latents."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rmr_dist import losses


def test_transe_energy_by_hand():
  a = np.array([[[1.0, 2.0], [0.0, 0.0]]])  # [B=1, N=2, H=2]
  b = np.array([[[0.0, 0.0], [0.0, 1.0]]])
  # slot 0: (1-0)^2 + (2-0)^2 = 5; slot 1: 0^2 + (0-1)^2 = 1; mean over slots = 3.
  # sigma = 0.5: 0.5 / 0.25 = 2, energy 2 * 3 = 6.  sigma = 1: 0.5 * 3 = 1.5.
  np.testing.assert_allclose(losses.transe_energy(a, b, sigma=0.5), [6.0])
  np.testing.assert_allclose(losses.transe_energy(a, b, sigma=1.0), [1.5])
  np.testing.assert_allclose(losses.transe_energy(a, a), [0.0])
  # One energy per example: a batch of two gives two.
  both = losses.transe_energy(np.concatenate([a, b]), np.concatenate([b, b]))
  np.testing.assert_allclose(both, [6.0, 0.0])


# B = 2 examples, N = 1 slot, H = 1 feature.
Z = np.array([[[0.0]], [[1.0]]])  # encoded current states
Z_NEXT = np.array([[[0.5]], [[1.0]]])  # encoded next states
Z_PRED = np.array([[[0.0]], [[1.5]]])  # predicted next states
SWAP = np.array([1, 0], np.int32)


def test_contrastive_loss_by_hand():
  # sigma 0.5 -> factor 2.
  # positive: ex 0: 2 * (0 - 0.5)^2 = 0.5; ex 1: 2 * (1.5 - 1)^2 = 0.5; mean 0.5.
  # negative (perm [1, 0]): d(z_0, z_1) = d(z_1, z_0) = 2 * 1^2 = 2 for both examples.
  loss, m = losses.contrastive_loss(Z_PRED, Z_NEXT, Z, SWAP, hinge=1.0, sigma=0.5)
  # hinge 1: max(0, 1 - 2) = 0 -> loss = 0.5 + 0.
  np.testing.assert_allclose([loss, m['positive_energy'], m['negative_energy'],
                              m['negative_loss']], [0.5, 0.5, 2.0, 0.0])
  assert float(m['loss']) == float(loss)
  # hinge 3: max(0, 3 - 2) = 1 per example -> loss = 0.5 + 1 = 1.5.
  loss, m = losses.contrastive_loss(Z_PRED, Z_NEXT, Z, SWAP, hinge=3.0, sigma=0.5)
  np.testing.assert_allclose([loss, m['negative_loss']], [1.5, 1.0])
  # The identity permutation pairs each example with itself: energy 0, term = hinge.
  loss, m = losses.contrastive_loss(Z_PRED, Z_NEXT, Z, np.array([0, 1]), hinge=1.0)
  np.testing.assert_allclose([loss, m['negative_energy'], m['negative_loss']], [1.5, 0.0, 1.0])


def test_negative_compares_current_states_not_next_states():
  """C-SWM's code: hinge on d(z, z[perm]); the next states only enter the positive term."""
  _, m1 = losses.contrastive_loss(Z_PRED, Z_NEXT, Z, SWAP, hinge=3.0)
  _, m2 = losses.contrastive_loss(Z_PRED, Z_NEXT + 10.0, Z, SWAP, hinge=3.0)
  assert float(m1['negative_energy']) == float(m2['negative_energy']) == 2.0
  assert float(m2['positive_energy']) > float(m1['positive_energy'])
  # Gradient of the negative term reaches z (both sides of the pair), not z_next.
  grad_z, grad_next = jax.grad(
      lambda z, zn: losses.contrastive_loss(Z_PRED, zn, z, SWAP, hinge=3.0)[1]['negative_loss'],
      argnums=(0, 1))(jnp.asarray(Z), jnp.asarray(Z_NEXT))
  # Both hinge terms are active (3 - 2 > 0) and equal, so
  # negative_loss = 3 - 2 (z_0 - z_1)^2: d/dz_0 = -4 (z_0 - z_1) = 4, d/dz_1 = -4.
  np.testing.assert_allclose(grad_z[:, 0, 0], [4.0, -4.0])
  np.testing.assert_array_equal(grad_next, np.zeros_like(Z_NEXT))


def test_key_gives_a_deterministic_permutation():
  key = jax.random.PRNGKey(3)
  perm = losses.negative_permutation(key, 8)
  assert perm.dtype == jnp.int32 and sorted(np.asarray(perm).tolist()) == list(range(8))
  np.testing.assert_array_equal(perm, losses.negative_permutation(key, 8))
  rng = np.random.default_rng(0)
  z, z_next, z_pred = (rng.normal(size=(8, 3, 4)).astype(np.float32) for _ in range(3))
  with_key = losses.contrastive_loss(z_pred, z_next, z, key)
  with_perm = losses.contrastive_loss(z_pred, z_next, z, perm)
  jax.tree_util.tree_map(np.testing.assert_array_equal, with_key, with_perm)
  typed = losses.contrastive_loss(z_pred, z_next, z, jax.random.key(3))
  np.testing.assert_array_equal(typed[0], losses.contrastive_loss(
      z_pred, z_next, z, losses.negative_permutation(jax.random.key(3), 8))[0])


def test_loss_is_a_per_example_mean():
  """With the negatives given, the full-batch loss is the mean of equal halves' losses
  (what makes the pmean of device gradients the full-batch gradient)."""
  rng = np.random.default_rng(1)
  z, z_next, z_pred = (rng.normal(size=(6, 2, 3)).astype(np.float32) for _ in range(3))
  perm = np.array([3, 0, 5, 1, 2, 4])
  z_neg = z[perm]
  full = losses.contrastive_loss_with_negatives(z_pred, z_next, z, z_neg, hinge=20.0)
  halves = [losses.contrastive_loss_with_negatives(z_pred[s], z_next[s], z[s], z_neg[s],
                                                   hinge=20.0)
            for s in (slice(0, 3), slice(3, 6))]
  for key in full[1]:
    np.testing.assert_allclose(full[1][key], (halves[0][1][key] + halves[1][1][key]) / 2,
                               rtol=1e-6, err_msg=key)


@pytest.mark.parametrize('jit', [False, True])
def test_jitted_and_eager_agree(jit):
  fn = lambda *a: losses.contrastive_loss(*a, hinge=1.0, sigma=0.5)[0]
  fn = jax.jit(fn) if jit else fn
  np.testing.assert_allclose(fn(Z_PRED, Z_NEXT, Z, SWAP), 0.5)


def test_pairwise_energy_is_transe_energy_of_every_pair():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(3, 4, 5)), rng.normal(size=(6, 4, 5))  # [b, N, H], [B, N, H]
  expected = np.array([[float(losses.transe_energy(a[i], b[j], sigma=0.3)) for j in range(6)]
                       for i in range(3)])
  np.testing.assert_allclose(losses.pairwise_energy(a, b, sigma=0.3), expected, rtol=1e-5,
                             atol=1e-5)


def _energies_f64(a, b, sigma):
  """The float64 reference of pairwise energies (numpy, from differences)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return 0.5 / sigma ** 2 * np.square(a[:, None] - b[None]).sum(-1).mean(-1)  # [b, B]


def test_pairwise_energy_keeps_its_digits_at_the_real_latent_scale():
  # f~'s latents at the natural model's scale: 128 slots x 64 features, each slot carrying an
  # N(0, 1) slot embedding (|z|^2 ~ 8e3) that cancels in every difference, plus frame-specific
  # parts of ~1e-2. In float32 the expansion |a|^2 + |b|^2 - 2 a.b loses these.
  rng = np.random.default_rng(0)
  embedding = rng.normal(size=(128, 64))
  a = (embedding + 1e-2 * rng.normal(size=(6, 128, 64))).astype(np.float32)
  b = (embedding + 1e-2 * rng.normal(size=(8, 128, 64))).astype(np.float32)
  for sigma in (0.3, 0.5):
    expected = _energies_f64(a, b, sigma)  # float64 of the same float32 inputs
    np.testing.assert_allclose(np.asarray(losses.pairwise_energy(a, b, sigma=sigma)), expected,
                               rtol=1e-4)
    slot_energy = np.asarray(jax.jit(
        lambda x, y, s=sigma: losses.slot_infonce_loss(x, y, np.arange(6), sigma=s)[1]
    )(a, b)['positive_energy'])
    own = 0.5 / sigma ** 2 * np.square(np.asarray(a, np.float64) - b[:6]).sum(-1)  # [6, N]
    np.testing.assert_allclose(slot_energy, own.mean(), rtol=1e-4)


def test_infonce_loss_by_hand():
  # Energies (sigma 0.5, factor 2): row 0 [2 * 0.5^2, 2 * 1^2] = [0.5, 2]; row 1 [2, 0.5].
  # Each row: -log(e^-0.5 / (e^-0.5 + e^-2)) = log(1 + e^-1.5).
  loss, m = losses.infonce_loss(Z_PRED, Z_NEXT, np.array([0, 1]), sigma=0.5)
  np.testing.assert_allclose([loss, m['positive_energy'], m['negative_energy'], m['accuracy']],
                             [np.log1p(np.exp(-1.5)), 0.5, 2.0, 1.0], rtol=1e-6)
  # A shard's rows against the whole batch: row 1 alone, its own next frame at index 1.
  loss1, m1 = losses.infonce_loss(Z_PRED[1:], Z_NEXT, np.array([1]), sigma=0.5)
  np.testing.assert_allclose([loss1, m1['accuracy']], [np.log1p(np.exp(-1.5)), 1.0], rtol=1e-6)
  # Swapped positives: each row's own frame is the far one.
  loss_w, m_w = losses.infonce_loss(Z_PRED, Z_NEXT, np.array([1, 0]), sigma=0.5)
  np.testing.assert_allclose([loss_w, m_w['accuracy']], [np.log1p(np.exp(1.5)), 0.0], rtol=1e-6)


def test_infonce_gradient_pulls_the_positive_and_pushes_the_negative():
  grad = jax.grad(lambda zn: losses.infonce_loss(Z_PRED[:1], zn, np.array([0]))[0])(Z_NEXT)
  # Row 0 predicts 0.0: its own next frame (0.5) is pulled down towards it (positive
  # gradient), the other (1.0) pushed further up (negative gradient).
  assert float(grad[0, 0, 0]) > 0 > float(grad[1, 0, 0])


def test_slot_infonce_loss_is_infonce_slot_by_slot():
  # One slot: the same as InfoNCE (its energy is a mean over one slot).
  for positives in (np.array([0, 1]), SWAP):
    np.testing.assert_allclose(losses.slot_infonce_loss(Z_PRED, Z_NEXT, positives)[0],
                               losses.infonce_loss(Z_PRED, Z_NEXT, positives)[0], rtol=1e-6)
  # Two slots, each its own classifier: slot 0 tells the rows apart, slot 1 is the same in
  # every frame (both candidates tie: log 2 for each row), so the mean is the two halves'.
  z_pred = np.concatenate([Z_PRED, np.zeros_like(Z_PRED)], axis=1)  # [2, 2, 1]
  z_next = np.concatenate([Z_NEXT, np.zeros_like(Z_NEXT)], axis=1)
  loss, m = losses.slot_infonce_loss(z_pred, z_next, np.array([0, 1]), sigma=0.5)
  np.testing.assert_allclose([loss, m['accuracy']],
                             [(np.log1p(np.exp(-1.5)) + np.log(2.0)) / 2, 0.75], rtol=1e-6)
  # Whole-frame InfoNCE on the same latents: the tied slot halves every energy, no more.
  whole, _ = losses.infonce_loss(z_pred, z_next, np.array([0, 1]), sigma=0.5)
  np.testing.assert_allclose(whole, np.log1p(np.exp(-0.75)), rtol=1e-6)


def test_action_infonce_loss_against_a_float64_reference():
  """The action contrast: each row's next latent against its predictions under the action taken
  (index 0) and other actions; other actions equal to the one taken are left out, and a row
  with none left does not count."""
  rng = np.random.default_rng(0)
  z_pred = rng.normal(size=(4, 3, 2, 5)).astype(np.float32)  # [b, 1 + K, N, H]
  z_next = rng.normal(size=(4, 2, 5)).astype(np.float32)
  valid = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 0], [1, 0, 0]], bool)
  loss, m = losses.action_infonce_loss(z_pred, z_next, valid, sigma=0.3)
  energy = (0.5 / 0.3 ** 2 * np.sum((z_pred.astype(np.float64) - z_next[:, None]) ** 2,
                                    axis=(2, 3)) / 2)  # [b, 1 + K]
  losses_ref, best = [], []
  for i in range(3):  # row 3 has no valid other action
    e = energy[i][valid[i]]
    losses_ref.append(e[0] + np.log(np.sum(np.exp(-e))))
    best.append(np.argmin(e) == 0)
  np.testing.assert_allclose([loss, m['action_loss'], m['action_accuracy']],
                             [np.mean(losses_ref), np.mean(losses_ref), np.mean(best)],
                             rtol=1e-5)
  # The prediction under the action taken is pulled towards the next latent, the others pushed.
  grad = jax.grad(lambda zp: losses.action_infonce_loss(zp, z_next, valid, sigma=0.3)[0])(
      jnp.asarray(z_pred))
  toward = np.sum(np.asarray(grad)[0, 0] * (z_pred[0, 0] - z_next[0]))
  away = np.sum(np.asarray(grad)[0, 1] * (z_pred[0, 1] - z_next[0]))
  assert toward > 0 > away
  assert np.all(np.asarray(grad)[3] == 0) and np.all(np.asarray(grad)[1, 1] == 0)
