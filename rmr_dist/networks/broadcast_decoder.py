"""The spatial broadcast decoder (Watters et al., 2019) in slot-centred coordinates: g~ of the
bouncing-balls model, decoding slot latents into per-slot RGB and masks composited into a frame.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rmr_dist.networks.slot_attention import pixel_centres


def _zero_leading_rows(n: int):
  """A Dense kernel initialiser: the first ``n`` input rows zero, the others Flax's default
  draw for a Dense of those inputs alone (its fan-in), so the layer starts as it would
  without the first ``n`` inputs. ``n`` = 0: Flax's default."""
  default = nn.linear.default_kernel_init
  if not n:
    return default

  def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    rest = default(key, (shape[0] - n, *shape[1:]), dtype)  # [in - n, out]
    return jnp.concatenate([jnp.zeros((n, *shape[1:]), dtype), rest], axis=0)  # [in, out]
  return init


class BroadcastDecoder(nn.Module):
  """g~: a spatial broadcast decoder whose coordinates are centred on each slot's position.

  For each slot latent z [D] with an anchor position a [2] (box coordinates):

    p      = a + displacement_scale * Dense_2(z)          the slot's drawn position
    h(u)   = ReLU(Dense(z) + Dense(position_scale * (u - p)))   at every pixel centre u
    h(u)   = ReLU(Dense(h(u))), ``num_layers`` times            (a per-pixel MLP, 1x1)
    rgb(u) = Dense_3(h(u)),  logit(u) = Dense_1(h(u)) - |position_scale * (u - p)|^2 / 2

  masks are softmaxed across slots, ``recon = sum_k mask_k * rgb_k`` in [-1, 1] scale,
  returned mapped to [0, 1].

  Departures from Watters et al. / Slot Attention's decoder (absolute coordinates in [0, 1],
  broadcast to 8x8 and upsampled by transposed convolutions), and why: the balls are a few
  pixels across, and with [0, 1] coordinates the decoder needs large weights to draw anything
  that small, which Adam takes thousands of updates to grow; both models then sat at the
  mean-frame solution. In coordinates relative to the slot's position, scaled to about a ball
  radius per unit, drawing a ball is the same small function wherever the ball is, and where
  it is drawn is an explicit output ``p`` whose gradient reaches the encoder's attention.
  The fixed Gaussian term in the mask logits (no parameter) makes every slot's mask start as a
  soft disc around its position: with masks uniform and every slot drawing the same mean
  colour, no slot's drawing matters to the loss: a saddle at the mean frame where models
  lingered for hundreds of updates (README, "Bouncing balls", has the measurements).
  ``p`` is the anchor (in the balls model, the slot's position in the last input frame) plus
  a scaled displacement read linearly from z, as the abstract model's g reads the next
  position from its latent (``balls.BallsAbstractModel``); the Dense_2 starts at zero, so an
  untrained decoder draws each slot where it was last seen.

  Memory: every slot is decoded at full resolution: ``B * K * H * W * channels`` floats per
  layer.

  Attributes:
    image_size: output side (square images).
    channels: width of the per-pixel MLP.
    num_layers: hidden layers of the per-pixel MLP after the first.
    position_scale: multiplies the relative coordinates (box units), ~ 1 / ball radius.
    displacement_scale: S, box units per unit of the displacement read from z.
    zero_inputs: the first ``zero_inputs`` features of z start with zero weights in the
      ``latent`` Dense (its other rows drawn as for a Dense of the other features alone): a
      decoder trained while those features were zeros is unchanged when they become
      non-zero, and learns to read them by gradient.
  """
  image_size: int = 64
  channels: int = 64
  num_layers: int = 3
  position_scale: float = 8.0
  displacement_scale: float = 0.02
  zero_inputs: int = 0

  @nn.compact
  def __call__(self, z: jax.Array, anchor: jax.Array) -> dict:
    """Args:
      z: [B, K, D] slot latents.
      anchor: [B, K, 2] positions (x, y) in box coordinates the drawn positions start from.

    Returns:
      ``{'recon': [B, H, W, 3] in [0, 1] scale, 'masks': [B, K, H, W, 1] (sum over K == 1),
      'rgb': [B, K, H, W, 3] in [-1, 1] scale, 'positions': [B, K, 2] (p)}``,
      H = W = image_size.
    """
    b, k, _ = z.shape
    s = self.image_size
    step = nn.Dense(2, kernel_init=nn.initializers.zeros, name='displacement')(z)  # [B, K, 2]
    positions = anchor + self.displacement_scale * step  # [B, K, 2]
    centres = jnp.asarray(pixel_centres(s, s))  # [L, 2]
    relative = self.position_scale * (centres[None, None] - positions[:, :, None])  # [B,K,L,2]
    x = (nn.Dense(self.channels, kernel_init=_zero_leading_rows(self.zero_inputs),
                  name='latent')(z)[:, :, None]
         + nn.Dense(self.channels, name='position')(relative))  # [B, K, L, C]
    x = nn.relu(x)
    for i in range(self.num_layers):
      x = nn.relu(nn.Dense(self.channels, name=f'hidden_{i}')(x))  # [B, K, L, C]
    rgb = nn.Dense(3, name='rgb')(x).reshape(b, k, s, s, 3)  # [B, K, H, W, 3]
    # No bias: one shared by every slot cancels in the softmax over slots. Plus a fixed
    # Gaussian prior around the slot's position, so masks start as soft regions around the
    # slots rather than uniform (uniform masks over identical slot drawings are a saddle).
    prior = -0.5 * jnp.sum(jnp.square(relative), axis=-1, keepdims=True)  # [B, K, L, 1]
    mask_logits = (nn.Dense(1, use_bias=False, name='mask')(x) + prior).reshape(b, k, s, s, 1)
    masks = jax.nn.softmax(mask_logits, axis=1)  # over slots
    recon = jnp.sum(masks * rgb, axis=1)  # [B, H, W, 3] in [-1, 1] scale
    return {'recon': 0.5 * (recon + 1.0), 'masks': masks, 'rgb': rgb, 'positions': positions}
