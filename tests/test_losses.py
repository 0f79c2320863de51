"""Tests for rmr_dist.losses: the masked, teacher-forced abstract loss and prediction."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rmr_dist import losses

# One transition, three slots: slot 1 changes (its last bit flips), slots 0 and 2 do not.
X = np.array([[[0, 0, 0, 0, 0, 0, 0, 1],
               [1, 0, 1, 0, 1, 0, 1, 0],
               [1, 1, 1, 1, 1, 1, 1, 1]]], np.float32)  # [1, 3, 8]
Y = X.copy()
Y[0, 1, 7] = 1.0  # slot 1: 0b10101010 -> 0b10101011


def test_true_mask_marks_changed_slots():
  np.testing.assert_array_equal(losses.true_mask(X, Y), [[False, True, False]])


def test_hand_computed_loss():
  # All logits 0: every BCE term is ln 2. Bit loss = mean over the 8 bits of the one
  # changed slot = ln 2; mask loss = mean over the 3 slots = ln 2; total 2 ln 2.
  loss, m = losses.abstract_loss(jnp.zeros((1, 3, 8)), jnp.zeros((1, 3)), X, Y)
  np.testing.assert_allclose(m['bit_loss'], math.log(2), rtol=1e-6)
  np.testing.assert_allclose(m['mask_loss'], math.log(2), rtol=1e-6)
  np.testing.assert_allclose(loss, 2 * math.log(2), rtol=1e-6)
  np.testing.assert_allclose(m['changed_fraction'], 1 / 3, rtol=1e-6)


def test_teacher_forcing_ignores_bit_errors_on_unchanged_slots():
  good = np.where(Y > 0, 10.0, -10.0).astype(np.float32)  # right bits everywhere
  bad = good.copy()
  bad[0, 0] *= -1.0  # confidently wrong bits on unchanged slot 0
  bad[0, 2] *= -1.0  # and on unchanged slot 2
  mask_logits = jnp.array([[-10.0, 10.0, -10.0]])
  loss_good, _ = losses.abstract_loss(good, mask_logits, X, Y)
  loss_bad, _ = losses.abstract_loss(bad, mask_logits, X, Y)
  assert float(loss_bad) == float(loss_good)
  grads = jax.grad(lambda b: losses.abstract_loss(b, mask_logits, X, Y)[0])(jnp.asarray(bad))
  np.testing.assert_array_equal(grads[0, 0], 0.0)
  np.testing.assert_array_equal(grads[0, 2], 0.0)
  assert np.any(grads[0, 1] != 0.0)
  # A wrong bit on the changed slot does count.
  wrong_changed = good.copy()
  wrong_changed[0, 1, 7] = -10.0
  loss_wrong, _ = losses.abstract_loss(wrong_changed, mask_logits, X, Y)
  assert float(loss_wrong) > float(loss_good) + 1.0


def test_mask_head_is_trained_on_every_slot():
  bits = np.where(Y > 0, 10.0, -10.0).astype(np.float32)
  right = losses.abstract_loss(bits, jnp.array([[-10.0, 10.0, -10.0]]), X, Y)[1]
  wrong = losses.abstract_loss(bits, jnp.array([[10.0, 10.0, -10.0]]), X, Y)[1]
  assert float(wrong['mask_loss']) > float(right['mask_loss']) + 3.0
  assert float(right['mask_accuracy']) == 1.0
  np.testing.assert_allclose(wrong['mask_accuracy'], 2 / 3, rtol=1e-6)


def test_no_change_gives_zero_bit_loss_and_finite_gradients():
  def loss_fn(b):
    return losses.abstract_loss(b, jnp.full((1, 3), -5.0), X, X)[0]
  bits = jnp.ones((1, 3, 8))
  loss, m = losses.abstract_loss(bits, jnp.full((1, 3), -5.0), X, X)
  assert float(m['bit_loss']) == 0.0
  assert np.all(np.isfinite(jax.grad(loss_fn)(bits)))


def test_loss_is_stable_for_huge_logits_and_jits():
  bits = np.where(Y > 0, -1e4, 1e4).astype(np.float32)  # maximally wrong
  loss, m = jax.jit(losses.abstract_loss)(bits, jnp.full((1, 3), 1e4), X, Y)
  assert np.isfinite(float(loss)) and float(m['bit_loss']) > 100.0


def test_predict_uses_the_predicted_mask():
  bit_logits = np.full((1, 3, 8), 5.0, np.float32)  # predicts all-ones bytes
  # Predicted mask overwrites slot 0 only.
  pred = losses.predict(bit_logits, jnp.array([[2.0, -2.0, -0.1]]), X)
  np.testing.assert_array_equal(pred[0, 0], np.ones(8))  # overwritten
  np.testing.assert_array_equal(pred[0, 1:], X[0, 1:])  # copied from the input
  # Metric slot accuracy uses the predicted mask too: slot 0 overwritten with 0xFF != 0x01
  # (wrong), slot 1 copied 0xAA != 0xAB (wrong), slot 2 copied 0xFF == 0xFF (right): 1/3.
  _, m = losses.abstract_loss(bit_logits, jnp.array([[2.0, -2.0, -0.1]]), X, Y)
  np.testing.assert_allclose(m['slot_accuracy'], 1 / 3, rtol=1e-6)


def test_frame_mse_on_hand_values():
  target = np.array([[[[255, 0, 0], [0, 0, 255]]]], np.uint8)  # [1, 1, 2, 3]
  recon = np.array([[[[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]]]], np.float32)
  # Squared errors: 0, 0.25, 0, 0, 0, 1 -> mean 1.25 / 6.
  np.testing.assert_allclose(losses.frame_mse(recon, target), 1.25 / 6, rtol=1e-6)
  assert losses.frame_mse(target.astype(np.float32) / 255.0, target) == 0.0
