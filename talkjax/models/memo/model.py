"""MEMO as pure functions of one parameter tree: condition a clip, remember, denoise.

params = {"reference_net", "diffusion_net", "image_proj", "audio_proj"} (the release's four
networks). A clip of F frames is generated from:
- the reference latent and the P past latents (the last P generated frames, or copies of
  the reference for the first clip): `condition` runs the ReferenceNet once on them;
- the memory: `remember` folds the past frames' features into every motion module's state
  once per clip (zeros for a new audio, `empty_memory`), outside the denoising loop — the
  release updates it at the first denoising step, from the same ReferenceNet features;
- `denoise(x_t, sigma)`: the DiffusionNet's velocity v = noise - x0 at noise level sigma
  (timestep 1000 sigma, as the flow-matching scheduler feeds it).
The unguided branch (`uncond`) is the release's: image tokens of a zero embedding, zero
audio tokens, the null emotion, and no reference keys in attn1.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from talkjax.models.memo import networks
from talkjax.models.memo.networks import MemoConfig
from talkjax.nn.unet import layer_sites

FLOW_TIMESTEPS = 1000.0


class Memo:
  def __init__(self, config: MemoConfig, *, dtype=jnp.float32, remat: bool = False,
               implementation: str | None = None):
    self.config = config
    self.dtype = dtype
    kw = dict(dtype=dtype, remat=remat, implementation=implementation)
    self.reference_net = networks.reference_net(config, **kw)
    self.diffusion_net = networks.diffusion_net(config, train=False, **kw)
    self.diffusion_net_train = networks.diffusion_net(config, train=True, **kw)
    self.image_proj = networks.image_proj(config, dtype)
    self.audio_proj = networks.audio_proj(config, dtype)

  # ---- shapes -----------------------------------------------------------------------

  def empty_memory(self, batch: int, height: int, width: int) -> dict:
    """A new audio's memory: {layer site: {transformer_blocks_j: {attention_blocks_i:
    {kv, z}}}} of zeros for latents of height x width."""
    return {s.name: networks.memory_module(self.config.memory, s.channels)
            .empty_memory(batch, s.height, s.width)
            for s in layer_sites(self.config.unet, 1, height, width)}

  def init(self, rng, example: dict) -> dict:
    """Boxed parameters of the four networks (use under jax.eval_shape for shapes only)."""
    r = jax.random.split(rng, 4)
    image = self.image_proj.init(r[0], example["identity"])
    tokens = nn.meta.unbox(self.image_proj.apply(image, example["identity"]))
    frames = jnp.concatenate([example["reference"][:, None], example["past"]], axis=1)
    t = jnp.zeros((frames.shape[0],))
    ref = self.reference_net.init(r[2], frames, t, tokens, return_features=True)
    reference, _ = self.condition_from(nn.meta.unbox(ref["params"]), example["reference"],
                                       example["past"], tokens)
    out = {"reference_net": ref["params"], "image_proj": image["params"]}
    audio = None
    if self.config.audio:
      boxed = self.audio_proj.init(r[1], example["speech"])
      out["audio_proj"] = boxed["params"]
      audio = nn.meta.unbox(self.audio_proj.apply(boxed, example["speech"]))
    b, f, h, w = example["latents"].shape[:4]
    cond = self.hook_inputs(reference, None, audio, example["emotion"],
                            self.empty_memory(b, h, w) if self.config.memory_on else None,
                            example["reference"])
    out["diffusion_net"] = self.diffusion_net.init(r[3], example["latents"], t, tokens,
                                                   cond)["params"]
    return out

  def hook_inputs(self, reference, keep, audio, emotion, memory, portrait=None) -> dict:
    """What the DiffusionNet's hooks read: reference features, which rows keep them
    (None: all), audio tokens (B, F, La, D) and emotion labels (B,) when the audio
    modules are on, the memory when the memory modules are, the portrait's latents
    (B, h, w, C) when `portrait_input` is."""
    b = next(iter(reference.values())).shape[0]
    out = {"reference": reference,
           "reference_keep": jnp.ones((b,), bool) if keep is None else keep}
    if self.config.portrait_input:
      if portrait is None:
        raise ValueError("portrait_input needs the portrait's latents in hook_inputs")
      out["portrait"] = portrait
    if self.config.audio:
      out["audio"] = audio.reshape((-1,) + audio.shape[2:])
      out["emotion"] = jnp.asarray(emotion, jnp.int32)
    if self.config.memory_on:
      out["memory"] = memory
    return out

  # ---- one clip ---------------------------------------------------------------------

  def condition_from(self, ref_params, reference, past, tokens, keep_image=None):
    """ReferenceNet on [reference; past] latents (B, h, w, C), (B, P, h, w, C) with the
    image tokens as context -> (reference features, past features) (networks.py).
    `keep_image` False rows see zero latents (training's image dropout)."""
    frames = jnp.concatenate([reference[:, None], past], axis=1)
    if keep_image is not None:
      frames = jnp.where(keep_image[:, None, None, None, None], frames, 0.0)
    t = jnp.zeros((frames.shape[0],))
    (_, attn1), state = self.reference_net.apply({"params": ref_params}, frames, t, tokens,
                                                 return_features=True, mutable=["intermediates"])
    return networks.reference_outputs(self.config, attn1, state["intermediates"],
                                      frames.shape[1], *frames.shape[2:4])

  def remember(self, diffusion_params, memory: dict, past: dict) -> dict:
    """Folds the past frames' features into every motion module's memory (no gradient unless
    the memory config's `backprop_past`)."""
    out = {}
    for name, state in memory.items():
      block, layer = name.split("/")
      index = layer.rsplit("_", 1)[1]
      module = networks.memory_module(self.config.memory, past[name].shape[-1], self.dtype)
      params = diffusion_params[block][f"motion_modules_{index}"]["temporal_transformer"]
      out[name] = module.apply({"params": params}, state, past[name],
                               method=type(module).remember)
    return out

  def denoise(self, diffusion_params, x_t, sigma, tokens, hook_inputs, *, rng=None,
              anchor=None):
    """Velocity prediction for latents x_t (B, F, h, w, C) at noise levels sigma (B,).
    With `rng` the emotion labels drop to null per module (training).

    `output = "velocity"` (the release): the DiffusionNet's output is v. With
    "preconditioned" (EDM's c_in / c_skip / c_out, written for x_t = (1 - s) x0 + s n with
    unit-variance latents, d = (1 - s)^2 + s^2): the net reads x_t / sqrt(d) and its output
    F gives x0 = (1 - s) / d x_t + s / sqrt(d) F, returned as the velocity
    (x_t - x0) / s = (2 s - 1) / d x_t - F / sqrt(d). Its target has unit variance at every
    level, and from pure noise (s = 1) F is the clean frame itself: a velocity net must
    instead pass the noise through exactly, and what it misses leaks into the frame.

    With `anchor = "last_past"` (a deviation where set) the same scalings are written for
    the residual y0 = x0 - a on `anchor` a (B, h, w, C), the last past frame's latents, of
    std r = anchor_std: y_t = x_t - (1 - s) a = (1 - s) y0 + s n, D = (1 - s)^2 r^2 + s^2,
    x0 = a + (1 - s) r^2 / D y_t + s r / sqrt(D) F; the net still reads x_t / sqrt(d).
    From pure noise the clean frame is a + r F: the face is carried forward unless the net
    moves it, where without the anchor it has to redraw it from the conditions."""
    net = self.diffusion_net if rng is None else self.diffusion_net_train
    rngs = None if rng is None else {"dropout": rng}
    run = lambda x: net.apply({"params": diffusion_params}, x, sigma * FLOW_TIMESTEPS, tokens,
                              hook_inputs, rngs=rngs)
    if self.config.output == "velocity":
      return run(x_t)
    s = sigma.astype(jnp.float32)[:, None, None, None, None]
    d = (1 - s) ** 2 + s ** 2
    f = run((x_t * jax.lax.rsqrt(d)).astype(x_t.dtype)).astype(jnp.float32)
    if self.config.anchor == "none":
      return (2 * s - 1) / d * x_t - f * jax.lax.rsqrt(d)
    if anchor is None:
      raise ValueError(f"model.flow.anchor {self.config.anchor!r} needs the anchor latents")
    a = anchor.astype(jnp.float32)[:, None]
    r2 = self.config.anchor_std ** 2
    y_t = x_t - (1 - s) * a
    big_d = (1 - s) ** 2 * r2 + s ** 2
    # (x_t - x0) / s written without dividing by s: x_t - x0 = y_t - s a - y0
    return ((s - (1 - s) * r2) / big_d * y_t - self.config.anchor_std
            * jax.lax.rsqrt(big_d) * f - a)

  def image_tokens(self, params, identity):
    return self.image_proj.apply({"params": params["image_proj"]}, identity)

  def audio_tokens(self, params, speech):
    return self.audio_proj.apply({"params": params["audio_proj"]}, speech)
