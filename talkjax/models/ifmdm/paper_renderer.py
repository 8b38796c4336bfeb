"""IF-MDM stage 1 as the paper builds it: a LIA-style autoencoder of StyleGAN2 blocks.

The "paper" renderer, next to the light "fast" one (autoencoder.py), with the same
interface (encode_appearance / encode_motion / render / __call__) and motion semantics
(z = w_source + D (alpha_driving - alpha_source), D orthonormalised by QR, alpha in (-1, 1)).
Architecture from the authors' public stage-1 code (ifmdm/ifmdm.github.io, code/stage1_model.py,
itself LIA's networks/ with a refine block and a generated blend added):

- Encoder: a 1x1 ConvLayer from RGB, StyleGAN2 residual blocks (blurred stride-2
  downsampling) down to 4x4, a 4x4 'valid' conv to the latent w. The feature maps from full
  resolution down to 8x8 are kept for the decoder.
- Motion head: autoencoder.MotionHead with 5 layers, as many as the authors' (four
  latent-wide layers, then the projection to `directions`).
- Decoder: a learned 4x4 constant and a StyledConv, then per scale 8 .. R an upsampling
  StyledConv and a StyledConv, all modulated by z. A modulated 1x1 head gives 2 flow + 1
  mask logits, to which the FIR-upsampled logits of the coarser scale are added (coarse to
  fine refinement). The encoder's features at that scale are warped by tanh(flow), masked by
  sigmoid(mask) and blended with a modulated 1x1 projection of the decoder features into
  the next scale's input: h = mask * warp(f) + (1 - mask) * gen(h). A ToRGB of the masked
  warped features plus the upsampled RGB of the coarser scale (skip architecture) gives the
  image, finished by a residual refine block at full resolution (three 3x3 convs of 512
  channels with ReLU and a 3x3 conv back to RGB: ~98 % of a 512 px frame's 2.5 TFLOP).
- Discriminator: StyleGAN2's residual discriminator with minibatch stddev.

Channels follow the paper's table per resolution (512 up to 32x32, then 256, 128, 64, 32
at 64 .. 512 px) or a `channels` tuple (fine to coarse; a shorter tuple repeats its last
entry for the coarser scales, see `scale_channels`), so small CPU models share the code.

Where this departs from the authors' code:
- Motion head: talkjax's MotionHead (lecun-normal Dense layers with leaky ReLU between
  them, tanh(Wx + b) at the end) instead of four activation-free EqualLinear layers (which
  compose to one linear map) and a bias-free tanh(EqualLinear).
- z uses the relative motion alpha_driving - alpha_source, like the fast renderer (and LIA
  at inference), where the authors train with z = w + D alpha_driving.
- DirectionBank: orthogonal init and a sign-fixed QR (autoencoder.py), not randn + plain QR.
- Warping is talkjax's (warp.py: pixel-centre grid, border clamping, (y, x) flow order), not
  grid_sample on a linspace(-1, 1) grid with zero padding.
- Parameters the authors' forward never uses are not created: `to_rgb1`, the noise
  weights (noise is never passed; see stylegan.StyledConv) and the generated blend of the
  last scale. The refine block's convs are lecun-normal initialised (torch: kaiming-uniform).
- The minibatch-stddev group is gcd(B, 4) (torch's needs B divisible by min(B, 4)).
- The modulated conv is computed in its non-fused form (same values; see stylegan.py).
- As in the authors' code, the rendered image is not squashed into [-1, 1]: the refine
  block is residual on the ToRGB output. Callers clip when they quantise.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from talkjax.nn.convs import conv
from talkjax.nn.layers import logical_init
from talkjax.nn.motion_renderer import DirectionBank, MotionHead
from talkjax.nn.stylegan import (EqualConv2d, EqualDense, ModulatedConv, ResDownBlock,
                                 StyledConv, ToRGB, minibatch_stddev, upsample2x)
from talkjax.nn.warp import warp

# The authors' (and StyleGAN2's, channel_multiplier=1) channels per feature-map side.
PAPER_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32,
                  1024: 16}


def scale_channels(resolution: int, channels: Sequence[int] | None = None) -> tuple[int, ...]:
  """Channels per scale, fine to coarse: at resolution, resolution / 2, ..., 4.

  None: the paper's table. A tuple shorter than the number of scales repeats its last
  entry for the coarser ones, so (32, 64, 128, 256, 512, 512) at 512 px is the paper's
  layout (32, 64, 128, 256, 512, 512, 512, 512)."""
  log = int(round(math.log2(resolution))) if resolution > 0 else 0
  if resolution < 8 or 2 ** log != resolution:
    raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
  sides = [2 ** i for i in range(log, 1, -1)]
  if channels is None:
    if resolution not in PAPER_CHANNELS:
      raise ValueError(f"the paper's channel table stops at 1024 px, got {resolution}: "
                       "pass channels")
    return tuple(PAPER_CHANNELS[s] for s in sides)
  channels = tuple(int(c) for c in channels)
  if not channels or len(channels) > len(sides):
    raise ValueError(f"{len(channels)} channels for {len(sides)} scales "
                     f"({resolution} .. 4 px): give 1 to {len(sides)} entries")
  return channels + (channels[-1],) * (len(sides) - len(channels))


class PaperEncoder(nn.Module):
  """(B, R, R, 3) -> (features at R, R/2, ..., 8 (fine to coarse), latent (B, latent))."""
  channels: Sequence[int]          # per scale R .. 4, as `scale_channels` gives
  latent: int
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, image):
    h = EqualConv2d(self.channels[0], 1, activate=True, dtype=self.dtype, name="from_rgb")(image)
    features = [h]
    for i, c in enumerate(self.channels[1:]):
      h = ResDownBlock(c, dtype=self.dtype, name=f"down_{i}")(h)
      features.append(h)
    # The authors' 4x4 'valid' conv on the 4x4 map is a dense layer on the flattened map.
    w = EqualDense(self.latent, axes=("channels", "embed"), use_bias=False, dtype=self.dtype,
                   name="to_latent")(h.reshape(h.shape[0], -1))
    return features[:-1], w


class RefineBlock(nn.Module):
  """IF-MDM's full-resolution refiner: x + conv(relu(conv(... relu(conv(x))))), `depth`
  3x3 convs of `channels` then a 3x3 conv back to x's channels."""
  channels: int = 512
  depth: int = 3
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, x):
    h = x
    for i in range(self.depth):
      h = nn.relu(conv(self.channels, 3, dtype=self.dtype, name=f"conv_{i}")(h))
    return x + conv(x.shape[-1], 3, dtype=self.dtype, name="out", out_axis="out_channels")(h)


class PaperDecoder(nn.Module):
  """(z (B, latent), encoder features fine to coarse) -> (image (B, R, R, 3), flows per scale)."""
  channels: Sequence[int]          # per scale R .. 4, as `scale_channels` gives
  refine_channels: int = 512
  refine_depth: int = 3
  noise: bool = False
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, z, features):
    b, c4 = z.shape[0], self.channels[-1]
    dtype = self.dtype or features[0].dtype
    const = self.param("const", logical_init(nn.initializers.normal(1.0), (None, None, "embed")),
                       (4, 4, c4))
    h = StyledConv(c4, 3, noise=self.noise, dtype=self.dtype, name="conv_4")(
        jnp.broadcast_to(const.astype(dtype), (b, 4, 4, c4)), z)
    rgb = logits = None
    flows = []
    for n, (feat, c) in enumerate(zip(reversed(features), reversed(self.channels[:-1]))):
      side = feat.shape[1]
      h = StyledConv(c, 3, upsample=True, noise=self.noise, dtype=self.dtype,
                     name=f"up_{side}")(h, z)
      h = StyledConv(c, 3, noise=self.noise, dtype=self.dtype, name=f"conv_{side}")(h, z)
      # 2 flow + 1 mask logits, refining the coarser scale's (upsampled) logits. In float32
      # whatever the compute dtype (3 channels: cheap): bfloat16 flows would shift the
      # sampling positions by up to a pixel at 512 px.
      fm = ModulatedConv(3, 1, demodulate=False, use_bias=True, out_axis="out_channels",
                         dtype=jnp.float32, name=f"flow_mask_{side}")(h, z)
      if logits is not None:
        fm = fm + upsample2x(logits)
      logits = fm
      flow, mask = jnp.tanh(fm[..., :2]), nn.sigmoid(fm[..., 2:])
      mask = mask.astype(h.dtype)
      warped = mask * warp(feat, flow).astype(h.dtype)
      if n < len(features) - 1:   # the blend feeds the next scale; the last has none
        gen = ModulatedConv(c, 1, demodulate=False, dtype=self.dtype, name=f"gen_{side}")(h, z)
        h = warped + (1 - mask) * gen
      rgb = ToRGB(modulated=False, dtype=self.dtype, name=f"to_rgb_{side}")(warped, skip=rgb)
      flows.append(flow)
    image = RefineBlock(self.refine_channels, self.refine_depth, dtype=self.dtype,
                        name="refine")(rgb)
    return image, flows


def _check_resolution(image, resolution: int):
  if image.shape[1:3] != (resolution, resolution):
    raise ValueError(f"the model is built for {resolution}x{resolution} images, got "
                     f"{image.shape[1]}x{image.shape[2]}")


class PaperMotionAutoencoder(nn.Module):
  """IF-MDM's stage-1 renderer; the same interface as autoencoder.MotionAutoencoder.

  `channels`: None (the paper's table) or a fine-to-coarse tuple (see `scale_channels`);
  `refine_channels`: None = the widest of them (512 at the paper's size). Render's output
  is not squashed into [-1, 1] (the authors' is not either: the refine block is residual
  on the ToRGB image); callers clip when they quantise."""
  resolution: int = 512
  channels: Sequence[int] | None = None
  latent: int = 512
  directions: int = 20
  refine_channels: int | None = None
  motion_layers: int = 5
  noise: bool = False
  dtype: jnp.dtype | None = None

  def setup(self):
    channels = scale_channels(self.resolution, self.channels)
    self.encoder = PaperEncoder(channels, self.latent, dtype=self.dtype)
    self.motion_head = MotionHead(self.directions, layers=self.motion_layers, dtype=self.dtype)
    self.bank = DirectionBank(self.latent, self.directions)
    self.decoder = PaperDecoder(channels, self.refine_channels or max(channels),
                                noise=self.noise, dtype=self.dtype)

  def encode_appearance(self, image):
    """Source image -> (features, latent, its own motion code, the image)."""
    _check_resolution(image, self.resolution)
    features, w = self.encoder(image)
    return features, w, self.motion_head(w), image

  def encode_motion(self, image):
    """Driving image -> motion code alpha (B, directions)."""
    _check_resolution(image, self.resolution)
    return self.motion_head(self.encoder(image)[1])

  def render(self, appearance, alpha):
    """Renders the source with motion code `alpha` (B, directions)."""
    features, w, alpha_source, _ = appearance
    z = w + (alpha - alpha_source).astype(w.dtype) @ self.bank().T.astype(w.dtype)
    return self.decoder(z, features)[0]

  def __call__(self, source, driving):
    return self.render(self.encode_appearance(source), self.encode_motion(driving))


class PaperDiscriminator(nn.Module):
  """StyleGAN2's residual discriminator: (B, R, R, 3) -> logits (B,)."""
  resolution: int = 512
  channels: Sequence[int] | None = None
  stddev_group: int = 4
  dtype: jnp.dtype | None = None

  @nn.compact
  def __call__(self, image):
    _check_resolution(image, self.resolution)
    channels = scale_channels(self.resolution, self.channels)
    h = EqualConv2d(channels[0], 1, activate=True, dtype=self.dtype, name="from_rgb")(image)
    for i, c in enumerate(channels[1:]):
      h = ResDownBlock(c, dtype=self.dtype, name=f"down_{i}")(h)
    h = minibatch_stddev(h, self.stddev_group)
    h = EqualConv2d(channels[-1], 3, activate=True, dtype=self.dtype, name="final_conv")(h)
    h = EqualDense(channels[-1], activate=True, dtype=self.dtype, name="final_dense")(
        h.reshape(h.shape[0], -1))
    return EqualDense(1, axes=("mlp", None), dtype=self.dtype, name="logit")(h)[:, 0]
