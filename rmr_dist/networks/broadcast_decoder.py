"""The spatial broadcast decoder (Watters et al., 2019), as in Slot Attention: g~ of the
bouncing-balls model, decoding slot latents into per-slot RGB and masks composited into a frame.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from rmr_dist.networks.slot_attention import SoftPositionEmbed


class BroadcastDecoder(nn.Module):
  """g~: spatial broadcast decoder (Watters et al., 2019), as in Slot Attention.

  Each slot latent [D] is tiled over a ``broadcast_size x broadcast_size`` grid, a soft
  position embedding is added, then ``num_layers`` transposed convolutions (``channels``
  channels, ReLU after each): the first ``log2(image_size / broadcast_size)`` with stride 2
  (8 -> 16 -> 32 -> 64 at the defaults), the rest stride 1. A per-pixel Dense then gives 4
  channels per slot: linear RGB and a mask logit. Masks are softmaxed across slots and
  ``recon = sum_k mask_k * rgb_k``.

  Memory: every slot is decoded at full resolution, so the last layers hold
  ``B * K * image_size^2 * channels`` floats each (5,632 x 4,096 x 64 = 1.5G floats at
  B=512, K=11, 64x64, 64 channels).

  Attributes:
    image_size: output side (square images).
    broadcast_size: side of the broadcast grid; ``image_size / broadcast_size`` must be a
      power of two needing at most ``num_layers`` stride-2 layers.
    channels: channels of every transposed convolution.
    kernel_size: kernel side.
    num_layers: transposed convolutions (App. A: 5).
  """
  image_size: int = 64
  broadcast_size: int = 8
  channels: int = 64
  kernel_size: int = 5
  num_layers: int = 5

  def __post_init__(self):
    ratio = self.image_size // self.broadcast_size if self.broadcast_size > 0 else 0
    if (self.broadcast_size < 1 or ratio * self.broadcast_size != self.image_size
        or ratio & (ratio - 1)):
      raise ValueError(f'image_size={self.image_size} / broadcast_size={self.broadcast_size}'
                       ' must be a power of two')
    if self.num_upsampling > self.num_layers:
      raise ValueError(f'image_size={self.image_size} from broadcast_size='
                       f'{self.broadcast_size} needs {self.num_upsampling} stride-2 layers '
                       f'but num_layers={self.num_layers}')
    super().__post_init__()

  @property
  def num_upsampling(self) -> int:
    """Stride-2 layers: log2(image_size / broadcast_size)."""
    return int(round(math.log2(self.image_size // self.broadcast_size)))

  @nn.compact
  def __call__(self, z: jax.Array) -> dict:
    """Args:
      z: [B, K, D] slot latents.

    Returns:
      ``{'recon': [B, H, W, 3], 'masks': [B, K, H, W, 1] (sum over K == 1),
      'rgb': [B, K, H, W, 3]}`` with H = W = image_size.
    """
    b, k, d = z.shape
    s = self.broadcast_size
    x = jnp.broadcast_to(z.reshape(b * k, 1, 1, d), (b * k, s, s, d))  # [B*K, s, s, D]
    x = SoftPositionEmbed(name='position_embedding')(x)
    for i in range(self.num_layers):
      stride = 2 if i < self.num_upsampling else 1
      x = nn.ConvTranspose(self.channels, (self.kernel_size, self.kernel_size),
                           strides=(stride, stride), padding='SAME', name=f'deconv_{i}')(x)
      x = nn.relu(x)  # [B*K, h_i, w_i, C]; finally [B*K, H, W, C]
    x = nn.Dense(4, name='output')(x)  # [B*K, H, W, 4]
    x = x.reshape(b, k, self.image_size, self.image_size, 4)
    rgb, mask_logits = x[..., :3], x[..., 3:]  # [B, K, H, W, 3], [B, K, H, W, 1]
    masks = jax.nn.softmax(mask_logits, axis=1)  # over slots
    recon = jnp.sum(masks * rgb, axis=1)  # [B, H, W, 3]
    return {'recon': recon, 'masks': masks, 'rgb': rgb}
