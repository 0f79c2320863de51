"""Bouncing-balls abstract learner (paper section 3, Appendix A): a pure pmapped step and its loop.

``g(P(f(x)))`` on positions (``networks.balls.BallsAbstractModel``), MSE on the next positions,
Adam. Batches ``{'history': [B, T_hist, N, 2], 'target': [B, N, 2]}`` float32. The loss is a
per-example mean over equal shards, so the pmean of the devices' gradients is the full-batch
gradient (1 device == N devices). P is exported alone (``checkpointing``) with a
``ModelSpec`` whose ``action_size`` is 0 and ``num_slots`` the number of balls.
:func:`rollout` feeds predictions back as inputs (scored by ``evaluation.balls_eval``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmr_dist import checkpointing
from rmr_dist import config as config_lib
from rmr_dist.learning.loop import TrainState
from rmr_dist.learning import optimizers
from rmr_dist.learning.loop import Batch, Metrics, PmapLearner
from rmr_dist.networks import balls as balls_net
from rmr_dist.networks import processors


def abstract_spec(config: config_lib.BallsAbstractConfig, num_balls: int
                  ) -> processors.ModelSpec:
  """The processor spec of the balls MPNN (no action, ``num_balls`` nodes)."""
  return processors.ModelSpec(
      processor='mpnn', latent_size=config.latent_size, hidden_size=config.hidden_size,
      num_message_steps=config.num_message_steps, aggregation=config.aggregation,
      slot_embedding=False, num_slots=num_balls, action_size=0)


def make_abstract_model(spec: processors.ModelSpec, displacement_scale: float = 0.02
                        ) -> balls_net.BallsAbstractModel:
  """``g(P(f(x)))`` for ``spec``; ``displacement_scale`` is the sim's (``SimConfig``)."""
  return balls_net.BallsAbstractModel(processor=processors.make_spec_processor(spec),
                                      latent_size=spec.latent_size,
                                      displacement_scale=displacement_scale)


def abstract_update(state: TrainState, batch: Batch, *, model: nn.Module,
                    optimizer: optax.GradientTransformation, axis_name: str | None = None,
                    input_noise: float = 0.0) -> tuple[TrainState, Metrics]:
  """One Adam step on the next-position MSE; pure, jit- and pmap-able.

  Args:
    state: the current state (per device under pmap).
    batch: ``history`` [B, T_hist, N, 2], ``target`` [B, N, 2] (this device's shard).
    model: the abstract model.
    optimizer: the optax optimiser.
    axis_name: the pmap axis to average over, or None on one device.
    input_noise: std of a random walk added along each input history (Sanchez-Gonzalez et
      al., 2020), in position units; the target stays the true next position. It makes the
      model correct its own small errors, which keeps autoregressive rollouts stable. The
      noise of a row depends on its global index, so 1 device == N devices.

  Returns:
    ``(new_state, metrics)``: ``loss`` (MSE of the batch before the update) and ``grad_norm``.
  """
  history = jnp.asarray(batch['history'], jnp.float32)  # [B, T_hist, N, 2]
  target = jnp.asarray(batch['target'], jnp.float32)  # [B, N, 2]
  rng, noise_key = jax.random.split(state.rng)
  if input_noise > 0:
    b = history.shape[0]
    offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * b
    rows = offset + jnp.arange(b)  # [B] global row indices
    steps = jax.vmap(lambda r: jax.random.normal(jax.random.fold_in(noise_key, r),
                                                 history.shape[1:]))(rows)
    history = history + input_noise * jnp.cumsum(steps, axis=1)  # [B, T_hist, N, 2]

  def objective(params):
    return jnp.mean(jnp.square(model.apply({'params': params}, history) - target))

  loss, grads = jax.value_and_grad(objective)(state.params)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    loss = jax.lax.pmean(loss, axis_name)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return (TrainState(params=params, opt_state=opt_state, step=state.step + 1, rng=rng),
          {'loss': loss, 'grad_norm': optax.global_norm(grads)})


class BallsAbstractLearner(PmapLearner):
  """Trains the balls abstract model from a batch iterator, pmapped over local devices.

  Resumable from ``checkpoint_dir`` (full state: params, Adam, step, key); a non-finite loss
  raises ``FloatingPointError`` before anything is saved.

  Args:
    spec: from :func:`abstract_spec`.
    history: T_hist, input states per window.
    learning_rate: Adam's learning rate.
    seed: seeds initialisation.
    iterator: yields batches (module docstring), batch size divisible by the devices.
    checkpoint_dir: Orbax checkpoint directory, or None.
    save_every: save period in steps.
    keep: checkpoints kept.
    log_fn: ``log_fn(scalars, step)`` every ``log_every`` steps.
    log_every: logging period.
    devices: devices to pmap over (default: all local).
    schedule: step -> learning rate (`optimizers.make_schedule`); default constant.
    grad_clip_norm: clip the global gradient norm to this (0: no clipping).
    displacement_scale: S of the model (``SimConfig.displacement_scale``).
    input_noise: random-walk input noise std, position units (``abstract_update``).
  """

  _name = 'Balls abstract learner'

  def __init__(self, spec: processors.ModelSpec, *, history: int, learning_rate: float,
               seed: int, iterator: Iterator[Batch], checkpoint_dir: str | None,
               save_every: int, keep: int,
               log_fn: Callable[[dict, int], None] | None = None, log_every: int = 100,
               devices: Sequence[jax.Device] | None = None,
               schedule: optax.Schedule | None = None, grad_clip_norm: float = 0.0,
               displacement_scale: float = 0.02, input_noise: float = 0.0):
    self._spec = spec
    self._model = make_abstract_model(spec, displacement_scale)
    self._schedule = schedule or optimizers.make_schedule(float(learning_rate))
    self._optimizer = optimizers.make_adam(self._schedule, grad_clip_norm)
    init_rng, state_rng = jax.random.split(jax.random.PRNGKey(seed))
    dummy = jnp.zeros((1, history, spec.num_slots, 2), jnp.float32)
    params = jax.device_get(self._model.init(init_rng, dummy)['params'])
    state = TrainState(params=params, opt_state=self._optimizer.init(params),
                       step=np.zeros((), np.int32), rng=jax.device_get(state_rng))
    self._setup(state, functools.partial(abstract_update, model=self._model,
                                         optimizer=self._optimizer, input_noise=input_noise),
                iterator=iterator, batch_keys=('history', 'target'),
                checkpoint_dir=checkpoint_dir, keep=keep, save_every=save_every,
                log_fn=log_fn, log_every=log_every, devices=devices)

  @property
  def spec(self) -> processors.ModelSpec:
    return self._spec

  @property
  def model(self) -> balls_net.BallsAbstractModel:
    return self._model

  def export_processor(self, path: str) -> str:
    """Writes the processor export (params of P + spec); replaces an older one atomically."""
    return checkpointing.export_processor(path, self.params['processor'], self._spec.to_dict(),
                                          overwrite=True)


@functools.partial(jax.jit, static_argnames=('model', 'steps'))
def rollout(model: nn.Module, params: Any, history: jax.Array, steps: int) -> jax.Array:
  """Autoregressive rollout: each prediction becomes the newest input state.

  Args:
    model: the abstract model.
    params: its params.
    history: [B, T_hist, N, 2] the true input window.
    steps: R, predictions to make.

  Returns:
    [B, R, N, 2] predicted positions (step 1 is the ordinary 1-step prediction).
  """

  def body(window, _):
    pred = model.apply({'params': params}, window)  # [B, N, 2]
    return jnp.concatenate([window[:, 1:], pred[:, None]], axis=1), pred

  _, preds = jax.lax.scan(body, jnp.asarray(history, jnp.float32), None, length=steps)
  return jnp.swapaxes(preds, 0, 1)  # [B, R, N, 2]
