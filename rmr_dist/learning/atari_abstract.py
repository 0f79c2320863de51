"""Abstract (RAM) learner: a pure pmapped train step and a plain-Python training loop.

The model is ``g(P(f(x), a))`` on RAM bits (``rmr_dist.networks.atari_abstract``), trained with
Adam on the teacher-forced BCE of ``rmr_dist.losses.abstract_loss`` (paper section 4,
Appendix B). Batches come from any iterator of numpy dicts::

    {'ram_t':   [B, 128] uint8,      RAM before the step
     'action':  [B, 18]  uint8,      one-hot action
     'ram_tp1': [B, 128] uint8}      RAM after the step

and are unpacked to bits inside the step, on device.

1 device == N devices. ``abstract_loss`` normalises its bit loss by the number of changed
bits IN THE BATCH it sees. A device holding half the batch divides its half's BCE sum by its
half's count, and the mean of two such ratios is not the full-batch ratio whenever the halves
hold different numbers of changed slots (which is almost always). :func:`update` therefore
shares the denominator across devices: each device takes its bit-BCE sum ``s_d`` (recovered
from ``abstract_loss`` as ``bit_loss * max(n_d, 1)``, ``n_d`` its changed-bit count) and the
global count ``n = psum(n_d)``, and differentiates ``D * s_d / max(n, 1) + mask_loss_d``.
``pmean`` of those gradients is ``sum_d grad(s_d) / n + mean_d grad(mask_loss_d)``, the
gradient of the full-batch loss (the mask loss is a plain mean over equal shards). The
reported metrics are formed the same way, so they match the 1-device ones too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rmr_dist import checkpointing
from rmr_dist import losses
from rmr_dist.learning import optimizers
from rmr_dist.learning.loop import Batch, Metrics, PmapLearner, TrainState
from rmr_dist.networks import atari_abstract as abstract_net
from rmr_dist.networks import processors

def make_model(spec: processors.ModelSpec) -> abstract_net.AbstractModel:
  """The abstract model ``g(P(f(x), a))`` that ``spec`` describes."""
  return abstract_net.AbstractModel(processor=processors.make_spec_processor(spec),
                                    latent_size=spec.latent_size,
                                    slot_embedding=spec.slot_embedding)


def init_state(model: nn.Module, optimizer: optax.GradientTransformation,
               rng: jax.Array) -> TrainState:
  """Initialises parameters (dummy [1, 128, 8] bits, [1, 18] action) and optimiser state.

  Args:
    model: the abstract model.
    optimizer: the optax optimiser.
    rng: PRNGKey; split into the init key and the state's key.

  Returns:
    A TrainState at step 0.
  """
  init_rng, state_rng = jax.random.split(rng)
  bits = jnp.zeros((1, abstract_net.NUM_SLOTS, abstract_net.NUM_BITS), jnp.float32)
  action = jnp.zeros((1, abstract_net.NUM_ACTIONS), jnp.float32)
  params = model.init(init_rng, bits, action)['params']
  return TrainState(params=params, opt_state=optimizer.init(params),
                    step=jnp.zeros((), jnp.int32), rng=state_rng)


def update(state: TrainState, batch: Batch, *, model: nn.Module,
           optimizer: optax.GradientTransformation,
           axis_name: str | None = None) -> tuple[TrainState, Metrics]:
  """One Adam step on the teacher-forced abstract loss; pure, jit- and pmap-able.

  Under ``pmap`` (``axis_name`` set) each device gets an equal share of the batch; the bit
  loss shares its denominator across devices (module docstring) and gradients and metrics
  are averaged, so the result equals the 1-device update on the whole batch.

  Args:
    state: the current state (per device under pmap).
    batch: ``ram_t`` [B, 128] uint8, ``action`` [B, 18] one-hot, ``ram_tp1`` [B, 128] uint8.
    model: the abstract model.
    optimizer: the optax optimiser.
    axis_name: the pmap axis to reduce over, or None on one device.

  Returns:
    ``(new_state, metrics)``: scalar metrics ``loss``, ``bit_loss``, ``mask_loss``,
    ``mask_accuracy``, ``changed_fraction``, ``slot_accuracy`` (of the whole batch, before
    the update) and ``grad_norm`` (global norm of the averaged gradient).
  """
  x_bits = abstract_net.bytes_to_bits(batch['ram_t'])  # [B, 128, 8]
  y_bits = abstract_net.bytes_to_bits(batch['ram_tp1'])  # [B, 128, 8]
  action = jnp.asarray(batch['action'], jnp.float32)  # [B, 18]
  changed = losses.true_mask(x_bits, y_bits)  # [B, 128]
  local_bits = abstract_net.NUM_BITS * jnp.sum(changed.astype(jnp.float32))  # [] n_d
  if axis_name is None:
    num_shards, total_bits = 1.0, local_bits
  else:
    num_shards = jax.lax.psum(1.0, axis_name)  # D
    total_bits = jax.lax.psum(local_bits, axis_name)  # [] n

  def objective(params):
    out = model.apply({'params': params}, x_bits, action)
    _, metrics = losses.abstract_loss(out.bit_logits, out.mask_logits, x_bits, y_bits)
    # abstract_loss's bit_loss is s_d / max(n_d, 1): undo the local normalisation.
    bit_sum = metrics['bit_loss'] * jnp.maximum(local_bits, 1.0)  # [] s_d
    shard_bit_loss = num_shards * bit_sum / jnp.maximum(total_bits, 1.0)
    return shard_bit_loss + metrics['mask_loss'], (metrics, bit_sum)

  grads, (metrics, bit_sum) = jax.grad(objective, has_aux=True)(state.params)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    bit_sum = jax.lax.psum(bit_sum, axis_name)
    metrics = jax.lax.pmean(metrics, axis_name)  # equal shards: exact for plain means
  bit_loss = bit_sum / jnp.maximum(total_bits, 1.0)
  metrics = dict(metrics, bit_loss=bit_loss, loss=bit_loss + metrics['mask_loss'],
                 grad_norm=optax.global_norm(grads))

  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  # No layer is stochastic yet; the key still advances once per step, deterministically.
  rng, _ = jax.random.split(state.rng)
  return TrainState(params=params, opt_state=opt_state, step=state.step + 1, rng=rng), metrics


class AbstractLearner(PmapLearner):
  """Trains one abstract model from a batch iterator, pmapped over local devices.

  Resumable: with ``checkpoint_dir`` holding a checkpoint, the learner restores the full
  state (params, Adam state, step, key) and :meth:`run` only does the remaining steps. If the
  loss or gradient norm becomes NaN / inf, :meth:`step` raises ``FloatingPointError`` and the
  bad state is never saved (the loop is `rmr_dist.learning.loop.PmapLearner`'s); the learner
  object is then unusable (build a new one to resume from the last good checkpoint).

  Args:
    spec: the model.
    learning_rate: Adam's learning rate.
    seed: seeds initialisation and the state's PRNG key.
    iterator: yields batches (module docstring) of a batch size divisible by the devices.
    checkpoint_dir: Orbax checkpoint directory, or None for no checkpoints.
    save_every: save every this many steps (and at the end of :meth:`run`).
    keep: checkpoints to keep.
    log_fn: called as ``log_fn(metrics + {'learning_rate', 'steps_per_s'}, step)`` every
      ``log_every`` steps.
    log_every: logging period in steps.
    devices: devices to pmap over (default: all devices; a process feeds its local ones).
  """

  _name = 'Abstract learner'

  def __init__(self, spec: processors.ModelSpec, *, learning_rate: float, seed: int,
               iterator: Iterator[Batch], checkpoint_dir: str | None, save_every: int,
               keep: int, log_fn: Callable[[dict, int], None] | None = None,
               log_every: int = 50, devices: Sequence[jax.Device] | None = None):
    self._spec = spec
    self._model = make_model(spec)
    self._schedule = optimizers.make_schedule(float(learning_rate))
    self._optimizer = optax.adam(learning_rate)
    state = jax.device_get(init_state(self._model, self._optimizer, jax.random.PRNGKey(seed)))
    self._setup(state, functools.partial(update, model=self._model, optimizer=self._optimizer),
                iterator=iterator, batch_keys=('ram_t', 'action', 'ram_tp1'),
                checkpoint_dir=checkpoint_dir, keep=keep, save_every=save_every,
                log_fn=log_fn, log_every=log_every, devices=devices)

  @property
  def spec(self) -> processors.ModelSpec:
    return self._spec

  def export_processor(self, path: str, overwrite: bool = True) -> str:
    """Writes the processor export (params of P + this spec, and the encoder f that feeds P:
    its slot embedding and projection); see ``checkpointing``.

    ``overwrite`` defaults to True so a resumed run can re-export its final processor.
    """
    params = self.params
    return checkpointing.export_processor(path, params['processor'], self._spec.to_dict(),
                                          overwrite=overwrite, encoder_params=params['encoder'])
