"""Bouncing-balls models: abstract (positions) and natural (frames) (paper section 3, App. A).

Abstract: ``g(P(f(x)))`` on ball positions. A history x [B, T_hist, N, 2] goes to

  f (``encoder``):   a linear projection of each ball's history to ``latent_size`` features,
                     the same for every ball -> [B, N, 128]. The history is first written as
                     ``[2 x_t - 1, (x_t - x_{t-1}) / S, ..., (x_{t-T+2} - x_{t-T+1}) / S]``
                     (2 * T_hist values; S the typical per-frame displacement), a fixed,
                     invertible linear map of ``[x_{t-T+1}, ..., x_t]``, so f stays linear in
                     the history as in App. A; it only puts positions and velocities on one
                     scale (velocities are ~1/60 of positions, and a plain linear f on raw
                     positions left the MPNN barely better than constant velocity);
  P (``processor``): a processor of ``rmr_dist.networks.processors`` (App. A: a 2-step MPNN
                     over the fully connected ball graph) -> [B, N, 128];
  g (``decoder``):   a linear projection of each ball, read as the scaled displacement:
                     ``x_{t+1} = x_t + S * g(z)`` -> [B, N, 2]. This residual to the last
                     position departs from App. A's plain linear g; without it the model stays
                     far above constant velocity (9x at one step in our measurements).

The system has no action, so P is called with a zero-width action ``[B, 0]``: its node
features are then just the latents, and its parameter shapes are those of a processor built
for ``A = 0``. f, g and an MPNN P all act per ball or equivariantly, so the abstract model is
permutation-equivariant over balls.

Natural: ``g~(P(f~(x)))`` on frames. f~ runs Slot Attention (Locatello et al., 2020) on each
of the T_hist input images (``slot_attention.SlotAttentionEncoder``); each slot also has an
explicit position, the centre of mass of its attention (as Invariant Slot Attention, Biza et
al., 2023). Per slot, its T_hist vectors and its positions' history features (the same
re-expression as the abstract f's input) are projected by one Dense to 128 features; P is the
same processor (its ``params['processor']`` subtree has the same structure as the abstract
model's, so a pre-trained abstract processor loads as-is); g~ is a spatial broadcast decoder
(Watters et al., 2019; ``broadcast_decoder.BroadcastDecoder``) in coordinates centred on each
slot's predicted position (its last position plus a displacement read from P's output, as the
abstract g), whose per-slot RGB and masks are composited into the predicted next frame,
scored by ``rmr_dist.losses.frame_mse``. Why the explicit positions: with App. A's plain
Slot Attention + absolute-coordinate broadcast decoder, neither RMR nor end-to-end left the
mean-frame solution within the updates a 2-core machine affords (README, "Bouncing balls").

Slot latents (``BallsNaturalModel.slot_latents``): with 'projection' (above) P reads a learned
projection of the slot vectors and positions, which lands outside the span P was trained on
(docs/experiments/balls.md); with 'abstract_f' P reads the abstract f applied to each slot's
inferred position history (``abstract_encoder``, the same Dense as the abstract model's
``encoder``: RMR loads the trained f and freezes it), so P receives exactly the kind of input
it saw in training, and the slot vector reaches g~ beside P's output (the balls' colours are
not in their positions). No true position enters: f reads the positions f~ infers.

Oracle (:class:`BallsOracleModel`, the upper reference for "using P"): the abstract f on the
TRUE positions, P, and g~ alone learned, drawing each ball from P's output.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rmr_dist.networks import broadcast_decoder
from rmr_dist.networks import slot_attention

LATENT_SIZE = 128  # per-ball / per-slot latent (App. A)
PROCESSOR_GRAPHS = ('all', 'objects')  # BallsNaturalModel.processor_graph
SLOT_LATENTS = ('projection', 'abstract_f')  # BallsNaturalModel.slot_latents
APPEARANCE_INPUTS = ('last_slot', 'history')  # BallsNaturalModel.appearance_input


def history_features(history: jax.Array, displacement_scale: float) -> jax.Array:
  """A position history re-expressed on one scale (module docstring): [B, T, N, 2] -> [B, N, 2T].

  ``[2 x_t - 1, (x_t - x_{t-1}) / S, ..., (x_{t-T+2} - x_{t-T+1}) / S]`` with S =
  ``displacement_scale``: a fixed invertible linear map of the history.
  """
  t = history.shape[1]
  steps = [(history[:, k] - history[:, k - 1]) / displacement_scale for k in range(t - 1, 0, -1)]
  return jnp.concatenate([2.0 * history[:, -1] - 1.0] + steps, axis=-1)


def objects_adjacency(attention: jax.Array) -> jax.Array:
  """P's graph over K slots without the background slot: [B, K, L] -> [B, K, K].

  The background is the slot with the most attention (``attention`` [B, K, L], softmaxed
  over slots, of the last input image): it covers most pixels. ``mask[i, j] = 1`` when j
  sends to i: every pair of other slots, and every slot's self-loop, so the background slot
  only updates from its own message.
  """
  k = attention.shape[1]
  background = jax.nn.one_hot(jnp.argmax(jnp.sum(attention, axis=-1), axis=-1), k)  # [B, K]
  obj = 1.0 - background
  return jnp.maximum(obj[:, :, None] * obj[:, None, :], jnp.eye(k)[None])  # [B, K, K]


def _no_action(batch_size: int) -> jax.Array:
  """The zero-width action [B, 0] the bouncing-balls processors are called with."""
  return jnp.zeros((batch_size, 0), jnp.float32)


class BallsAbstractModel(nn.Module):
  """``g(P(f(x)))`` on ball positions (paper Appendix A).

  Parameters: ``params['encoder']`` (f), ``params['processor']`` (P, to save or freeze),
  ``params['decoder']`` (g).

  Attributes:
    processor: an unbound processor (``make_processor('mpnn', ...)``); Flax names it
      ``processor`` after this attribute. Called with a zero-width action.
    latent_size: features per ball (128).
    displacement_scale: S, the typical per-frame displacement of a coordinate (module
      docstring; ``displacement_scale`` of the sim config).
  """
  processor: nn.Module
  latent_size: int = LATENT_SIZE
  displacement_scale: float = 0.02

  @nn.compact
  def __call__(self, history: jax.Array) -> jax.Array:
    """Args:
      history: [B, T_hist, N, 2] past ball positions, oldest first.

    Returns:
      [B, N, 2] predicted next positions.
    """
    b, t, n, d = history.shape
    history = jnp.asarray(history, jnp.float32)
    x = history_features(history, self.displacement_scale)  # [B, N, 2T]
    z = nn.Dense(self.latent_size, name='encoder')(x)  # [B, N, latent]
    z = self.processor(z, _no_action(b))  # [B, N, latent]
    return history[:, -1] + self.displacement_scale * nn.Dense(d, name='decoder')(z)  # [B, N, 2]


class BallsNaturalModel(nn.Module):
  """``g~(P(f~(x)))`` on frames (paper section 3 / Appendix A), predicting the next frame.

  f~: ``slot_attention.SlotAttentionEncoder`` on the T_hist input images -> per slot k and
  image t a vector [S] and a position [2]; per slot, the T vectors and the positions' history
  features (:func:`history_features`, as the abstract f reads its positions) are concatenated
  [B, K, T*S + 2T] and one Dense (``projection``) maps them to ``latent_size``; P: the
  processor (zero-width action); g~: ``broadcast_decoder.BroadcastDecoder``, each slot drawn
  at its last-frame position plus a displacement read from P's output (the abstract g's
  residual, ``BallsAbstractModel``).

  Parameters: exactly ``params['encoder']``, ``params['projection']``,
  ``params['processor']`` (the same structure as :class:`BallsAbstractModel`'s for the same
  processor config and latent size, so an abstract export loads as-is) and
  ``params['decoder']``; with ``slot_latents='abstract_f'``, ``params['abstract_encoder']``
  (the structure of :class:`BallsAbstractModel`'s ``encoder``) and ``params['appearance']``
  instead of ``params['projection']``.

  Attributes:
    encoder: an unbound ``slot_attention.SlotAttentionEncoder``.
    processor: an unbound processor; Flax names it ``processor``.
    decoder: an unbound ``broadcast_decoder.BroadcastDecoder`` (its ``displacement_scale`` is
      also the S of the history features).
    latent_size: per-slot latent (128); must match the abstract model's for the transfer.
    processor_graph: the graph P passes messages over. 'all': every slot, the background
      slot too (App. A's fully connected graph over the slots). 'objects'
      (:func:`objects_adjacency`): the background slot neither sends nor receives
      messages; the other slots form the fully connected graph of balls the abstract P was
      trained on (so 'mean' aggregation averages over as many nodes as in training).
    slot_latents: what P reads. 'projection': one Dense of each slot's T vectors and position
      features. 'abstract_f': the abstract f (``abstract_encoder``, a Dense of the position
      features alone, as :class:`BallsAbstractModel`'s ``encoder``) of each slot's inferred
      positions; g~ then reads ``[P's output, Dense(slot vector of the last image)]``
      (``appearance``, ``appearance_size`` features), and in the warm-start
      (``skip_processor``) zeros stand for P's output, so the warm-start does not read f.
    appearance_size: width of the slot-vector features g~ reads beside P's output
      ('abstract_f').
    appearance_input: what ``appearance`` reads ('abstract_f'): 'last_slot' (the slot vector
      of the last image) or 'history' (what 'projection' reads: the slot's T vectors and its
      position features; with ``appearance_size`` = latent size the warm-start's g~ then
      reads what the projection's warm-start reads, plus P's zeros).
  """
  encoder: slot_attention.SlotAttentionEncoder
  processor: nn.Module
  decoder: broadcast_decoder.BroadcastDecoder
  latent_size: int = LATENT_SIZE
  processor_graph: str = 'all'
  slot_latents: str = 'projection'
  appearance_size: int = 32
  appearance_input: str = 'last_slot'

  def __post_init__(self):
    if self.processor_graph not in PROCESSOR_GRAPHS:
      raise ValueError(f'processor_graph={self.processor_graph!r}; valid: {PROCESSOR_GRAPHS}')
    if self.slot_latents not in SLOT_LATENTS:
      raise ValueError(f'slot_latents={self.slot_latents!r}; valid: {SLOT_LATENTS}')
    if self.appearance_input not in APPEARANCE_INPUTS:
      raise ValueError(f'appearance_input={self.appearance_input!r}; valid: '
                       f'{APPEARANCE_INPUTS}')
    super().__post_init__()

  @nn.compact
  def __call__(self, frames: jax.Array, deterministic: bool = False,
               slot_noise: jax.Array | None = None, skip_processor: bool = False) -> dict:
    """Args:
      frames: [B, T_hist, H, W, 3] uint8 input frames, oldest first.
      deterministic: passed to the encoder (fixed initial slot noise, no 'slots' rng).
      slot_noise: [B, K, S] initial slot noise for the encoder (else it draws its own).
      skip_processor: decode f~'s latents directly (P replaced by the identity; the
        autoencoding warm-start of ``learning.balls_natural``); with 'abstract_f', zeros
        in place of P's output.

    Returns:
      ``{'recon': [B, H, W, 3] in [0, 1] scale, 'masks': [B, K, H, W, 1],
      'rgb': [B, K, H, W, 3], 'positions': [B, K, 2] (where each slot is drawn),
      'slot_positions': [B, T_hist, K, 2] (the encoder's), 'latents': [B, K, latent]
      (f~(x), P's input), 'next_latents': [B, K, latent] (P's output, the decoder's input),
      'attention': [B, T_hist, K, H*W]}``.
    """
    encoded = self.encoder(frames, deterministic, slot_noise)
    slots, positions = encoded['slots'], encoded['positions']  # [B,T,K,S], [B,T,K,2]
    b, t, k, s = slots.shape
    features = history_features(positions, self.decoder.displacement_scale)  # [B, K, 2T]
    x = jnp.concatenate([jnp.transpose(slots, (0, 2, 1, 3)).reshape(b, k, t * s),  # [B,K,T*S]
                         features], axis=-1)  # [B, K, T*S + 2T]
    appearance = None
    if self.slot_latents == 'abstract_f':
      latents = nn.Dense(self.latent_size, name='abstract_encoder')(features)  # [B, K, latent]
      appearance = nn.Dense(self.appearance_size, name='appearance')(
          slots[:, -1] if self.appearance_input == 'last_slot' else x)  # [B, K, A]
    else:
      latents = nn.Dense(self.latent_size, name='projection')(x)  # [B, K, latent]
    if skip_processor and not self.is_initializing():
      next_latents = latents if appearance is None else jnp.zeros_like(latents)
    else:
      graph = {}
      if self.processor_graph == 'objects':
        attention = jax.lax.stop_gradient(encoded['attention'][:, -1])  # [B, K, L]
        graph = {'adjacency_mask': objects_adjacency(attention)}
      next_latents = self.processor(latents, _no_action(b), **graph)  # [B, K, latent]
    z = (next_latents if appearance is None
         else jnp.concatenate([next_latents, appearance], axis=-1))  # [B, K, latent (+ A)]
    out = dict(self.decoder(z, positions[:, -1]))
    out.update(latents=latents, next_latents=next_latents, attention=encoded['attention'],
               slot_positions=positions)
    return out


class BallsOracleModel(nn.Module):
  """The oracle of "using P": the abstract f on TRUE positions, P, and g~ (an upper reference).

  f (``abstract_encoder``, as :class:`BallsAbstractModel`'s ``encoder``) maps each ball's
  true position history to its latent, P (zero-width action, the fully connected graph of
  balls P was trained on) steps them, and g~ (``broadcast_decoder.BroadcastDecoder``) draws
  ball n from ``[P's output, ball_appearance[n]]`` at its last true position plus the
  displacement it reads, and one background slot from the learned ``background`` vector at
  the box centre. With f and P the abstract model's, frozen, only g~ learns: the next-frame
  MSE a perfectly aligned encoder reaches through P. Ball n has the colour of index n
  (``envs.balls.BALL_COLOURS``), so a learned per-ball vector carries its appearance.

  Parameters: ``abstract_encoder``, ``processor`` (the abstract model's structure),
  ``ball_appearance`` [N, A], ``background`` [latent + A] and ``decoder``.

  Attributes:
    processor: an unbound processor; Flax names it ``processor``.
    decoder: an unbound ``broadcast_decoder.BroadcastDecoder`` (its ``displacement_scale``
      is the S of the history features).
    latent_size: features per ball (the abstract model's).
    appearance_size: width of the per-ball appearance vector.
  """
  processor: nn.Module
  decoder: broadcast_decoder.BroadcastDecoder
  latent_size: int = LATENT_SIZE
  appearance_size: int = 32

  @nn.compact
  def __call__(self, history: jax.Array, skip_processor: bool = False) -> dict:
    """Args:
      history: [B, T_hist, N, 2] true past ball positions, oldest first.
      skip_processor: zeros in place of P's output (the natural models' warm-start).

    Returns:
      The decoder's dict over N + 1 slots (the background last): ``recon`` [B, H, W, 3],
      ``masks`` [B, N + 1, H, W, 1], ``rgb``, ``positions`` [B, N + 1, 2]; and ``latents``,
      ``next_latents`` [B, N, latent] (P's input and output).
    """
    b, _, n, _ = history.shape
    history = jnp.asarray(history, jnp.float32)
    x = history_features(history, self.decoder.displacement_scale)  # [B, N, 2T]
    latents = nn.Dense(self.latent_size, name='abstract_encoder')(x)  # [B, N, latent]
    if skip_processor and not self.is_initializing():
      next_latents = jnp.zeros_like(latents)
    else:
      next_latents = self.processor(latents, _no_action(b))  # [B, N, latent]
    normal = nn.initializers.normal(1.0)
    ball = self.param('ball_appearance', normal, (n, self.appearance_size))  # [N, A]
    background = self.param('background', normal,
                            (self.latent_size + self.appearance_size,))  # [latent + A]
    z = jnp.concatenate([next_latents, jnp.broadcast_to(ball, (b,) + ball.shape)], -1)
    z = jnp.concatenate([z, jnp.broadcast_to(background, (b, 1, background.size))], 1)
    anchor = jnp.concatenate([history[:, -1], jnp.full((b, 1, 2), 0.5)], 1)  # [B, N + 1, 2]
    out = dict(self.decoder(z, anchor))  # z: [B, N + 1, latent + A]
    out.update(latents=latents, next_latents=next_latents)
    return out
