"""MEMO's training task (`memo`): rectified flow on VAE latents of talking clips.

A batch holds pixels in [-1, 1]: `video` (B, F, H, W, 3) the clip to generate, `reference`
(B, H, W, 3) the portrait, `past` (B, P, H, W, 3) the P frames before the clip; `speech`
(B, F, window, layers, channels) each frame's speech features, `emotion` (B,) its label,
and with `model.identity.encoder = "given"` an `identity` (B, 512) face embedding. The
frozen VAE (params["frozen"]["vae"]) encodes them in the step, as the release does.

Recipe (paper + the authors' released training code), per step:
- sigma ~ logit-normal(0, 1); x_t = sigma noise + (1 - sigma) x0; the DiffusionNet
  predicts the velocity v = noise - x0 at timestep 1000 sigma;
- the loss is the squared error of the implied clean latents x0 = x_t - sigma v (the
  release's `pred * -sigma + x_t` against the latents; = sigma^2 x the velocity error),
  the scale at which robust training (the trainer's train.robust_loss_threshold = 0.1)
  masks noisy examples out of the mean;
- condition dropout, each with its own probability (default 5 %): the image (the
  ReferenceNet sees zero latents), the audio (zero speech features into audio_proj), the
  past frames (zeros: the first clip of a video; `model.dropout.past_fill = "portrait"`,
  a deviation where set: copies of the portrait, as the sampler's first clip has them);
  every EmoAdaLN drops its label to null with p = 0.3. Deviations, labelled: sigma is
  continuous (the release quantises it to 1000 levels), and dropout is drawn per example
  (the release draws once per batch).
- `dropout.unguided` (deviation, labelled; 0 in the paper configs, as the release): with
  this probability an example gets exactly the sampler's unguided branch — zero-embedding
  image tokens, no reference keys in attn1, zero audio, the null emotion. The release
  never trains that branch as such (its image dropout zeros the reference latents but
  keeps the face embedding and the reference keys; the independent draws meet in ~0.1 %
  of examples); a model trained from scratch then guides against an untrained branch.
- the memory is built from the past frames with the step's own weights (no gradient
  through it), as the release does at every training step; `model.memory.backprop_past`
  (deviation, labelled where set) lets the gradient through.
- `model.clip.past_noise` (deviation, labelled where set; 0 in the paper configs): each
  example's past latents get Gaussian noise of a std drawn uniformly in [0, past_noise]
  before the ReferenceNet and the memory read them. Training sees ground truth's past
  frames, sampling its own generated ones; a model that trusts their details copies its
  own errors forward clip after clip (the tiny model's identity cosine fell from about 0.9
  on the first clip to minima of 0.3-0.6 within 4 s of 8-frame clips). Noised, the details
  worth keeping have to come from the portrait.
- `loss.motion_weight` (deviation, labelled where set; 0 in the paper configs): each latent
  pixel's squared error weighs 1 + motion_weight x how much its frame differs from the
  portrait there (mean absolute pixel difference over the latent pixel's f x f patch), as
  the tiny renderers' L1 does. Most of a talking face is the portrait again; a plain mean
  rewards copying it and leaves the mouth, a few latent pixels at 64 px, to the last steps.
- `model.flow.anchor = "last_past"` (deviation, labelled where set; "none" in the paper
  configs): the preconditioned output is a residual on the last past frame's latents
  (Memo.denoise), the portrait's where the past was dropped (`training_anchor`); with
  `model.flow.anchor_noised` the anchor carries the past noise, so the net learns to take
  noise out of the frame it carries forward rather than copy it.
- `model.portrait_input` (deviation, labelled where set; off in the paper configs): the
  portrait's latents also enter the DiffusionNet after conv_in (networks.PortraitInput),
  dropped with the image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from talkjax.audio.emotion import NULL_EMOTION
from talkjax.diffusion import objectives
from talkjax.errors import ConfigError
from talkjax.models.memo.builders import memo_config, vae_config
from talkjax.models.memo.model import Memo
from talkjax.models.memo.networks import IdentityEncoder
from talkjax.nn.vae import AutoencoderKL, scale_latents

# what a dropped past holds (model.dropout.past_fill)
PAST_FILLS = ("black", "portrait")


class MemoTask:
  def __init__(self, config):
    self.config = config
    dtype = jnp.dtype(config.compute_dtype)
    m = config.model
    self.memo_config = memo_config(m)
    self.memo = Memo(self.memo_config, dtype=dtype, remat=bool(m.get("remat", False)))
    self.vae_config = vae_config(m)
    self.vae = AutoencoderKL(self.vae_config, dtype=dtype)
    self.learned_identity = m.identity.encoder == "learned"
    self.past_fill = m.dropout.get("past_fill", "black")
    if self.past_fill not in PAST_FILLS:
      raise ConfigError(f"unknown model.dropout.past_fill {self.past_fill!r}",
                        fix=f"use one of {PAST_FILLS}: 'black' is the release's")
    self.identity_encoder = (IdentityEncoder(tuple(m.identity.channels),
                                             self.memo_config.identity_dim, dtype)
                             if self.learned_identity else None)

  # ---- shapes ----------------------------------------------------------------------

  def example_batch(self, batch_size):
    m, c = self.config.model, self.memo_config
    r, f, p = int(m.resolution), int(m.clip.frames), int(m.clip.past)
    batch = {"video": np.zeros((batch_size, f, r, r, 3), np.float32),
             "reference": np.zeros((batch_size, r, r, 3), np.float32),
             "past": np.zeros((batch_size, p, r, r, 3), np.float32),
             "speech": np.zeros((batch_size, f, c.audio_window, c.audio_layers,
                                 c.audio_channels), np.float32),
             "emotion": np.zeros((batch_size,), np.int32)}
    if not self.learned_identity:
      batch["identity"] = np.zeros((batch_size, c.identity_dim), np.float32)
    return batch

  def batch_axes(self):
    frames = ("batch", None, "height", "width", None)
    axes = {"video": frames, "past": frames, "reference": ("batch", "height", "width", None),
            "speech": ("batch", None, None, None, None), "emotion": ("batch",)}
    if not self.learned_identity:
      axes["identity"] = ("batch", None)
    return axes

  def init(self, rng, batch):
    m_rng, v_rng, i_rng = jax.random.split(rng, 3)
    f = self.vae_config.downsample_factor
    latent = lambda x: jnp.zeros(x.shape[:-3] + (x.shape[-3] // f, x.shape[-2] // f,
                                                 self.vae_config.latent_channels))
    example = {"latents": latent(batch["video"]), "reference": latent(batch["reference"]),
               "past": latent(batch["past"]), "speech": batch["speech"],
               "emotion": batch["emotion"],
               "identity": jnp.zeros((batch["video"].shape[0], self.memo_config.identity_dim))}
    trainable = self.memo.init(m_rng, example)
    if self.learned_identity:
      trainable["identity_encoder"] = self.identity_encoder.init(
          i_rng, batch["reference"])["params"]
    vae = self.vae.init(v_rng, batch["reference"][:1])["params"]
    return {"trainable": trainable, "frozen": {"vae": vae}}

  def initial_values(self):
    """The pretrained VAE (and, for stage 1, the SD UNet weights) named in the config."""
    from talkjax.models.memo.weights import initial_values
    return initial_values(self.config)

  # ---- the objective -------------------------------------------------------------------

  def latents(self, vae_params, pixels, rng=None):
    """Scaled latents of (..., H, W, 3) pixels: the posterior mean, or a sample with rng."""
    lead = pixels.shape[:-3]
    x = pixels.reshape((-1,) + pixels.shape[-3:])
    mean, logvar = self.vae.apply({"params": vae_params}, x, method=AutoencoderKL.encode)
    z = mean if rng is None else mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng,
                                                                                 mean.shape)
    z = scale_latents(self.vae_config, z.astype(jnp.float32))
    return jax.lax.stop_gradient(z.reshape(lead + z.shape[1:]))

  def identity(self, trainable, batch):
    if self.learned_identity:
      return self.identity_encoder.apply({"params": trainable["identity_encoder"]},
                                         batch["reference"])
    return batch["identity"]

  def loss(self, params, batch, rng):
    cfg, memo = self.config, self.memo
    tr, vae = params["trainable"], params["frozen"]["vae"]
    keys = jax.random.split(rng, 6)   # VAE sample, dropouts, sigma, noise, emotion labels, past noise
    b, f = batch["video"].shape[:2]
    drop = cfg.model.dropout
    u = jax.random.uniform(keys[1], (4, b))
    keep_image, keep_audio, keep_past = (u[0] >= drop.image, u[1] >= drop.audio,
                                         u[2] >= drop.past)
    # the sampler's unguided branch, exactly: zero-embedding image tokens, no reference
    # keys in attn1, zero audio, the null emotion (the past is kept, as the sampler does)
    guided = u[3] >= drop.get("unguided", 0.0)
    keep_audio = keep_audio & guided
    x0 = self.latents(vae, batch["video"], keys[0])
    reference = self.latents(vae, batch["reference"])
    past = jnp.zeros((b, 0) + reference.shape[1:])
    anchor = None
    if batch["past"].shape[1]:   # dropped past frames are black, as in the release
      fill = batch["reference"][:, None] if self.past_fill == "portrait" else 0.0
      past = self.latents(vae, jnp.where(keep_past[:, None, None, None, None],
                                         batch["past"], fill))
      clean = past
      past = noised_past(past, keys[5], float(cfg.model.clip.get("past_noise", 0.0)))
      if self.memo_config.anchor != "none":
        anchor = training_anchor(clean, past, reference, keep_past,
                                 bool(cfg.model.flow.get("anchor_noised", False)))
    identity = jnp.where(guided[:, None], self.identity(tr, batch), 0.0)
    tokens = memo.image_tokens(tr, identity)
    reference_feats, past_feats = memo.condition_from(tr["reference_net"], reference, past,
                                                      tokens, keep_image)
    audio = memory = None
    if self.memo_config.audio:
      speech = jnp.where(keep_audio[:, None, None, None, None], batch["speech"], 0.0)
      audio = memo.audio_tokens(tr, speech)
    if self.memo_config.memory_on:
      h, w = x0.shape[2:4]
      memory = memo.remember(tr["diffusion_net"], memo.empty_memory(b, h, w), past_feats)
    emotion = batch.get("emotion")
    if emotion is not None:
      emotion = jnp.where(guided, emotion, NULL_EMOTION)
    # the portrait's input path (model.portrait_input) drops with the image, as the
    # ReferenceNet's latents do
    portrait = (jnp.where(keep_image[:, None, None, None], reference, 0.0)
                if self.memo_config.portrait_input else None)
    hook_inputs = memo.hook_inputs(reference_feats, guided, audio, emotion, memory, portrait)

    fl = cfg.model.flow
    sigma = objectives.logit_normal(keys[2], (b,), fl.logit_mean, fl.logit_std)
    noise = jax.random.normal(keys[3], x0.shape)
    x_t = objectives.flow_sample(x0, noise, sigma)
    v = memo.denoise(tr["diffusion_net"], x_t, sigma, tokens, hook_inputs, rng=keys[4],
                     anchor=anchor)
    x0_hat = x_t - sigma[:, None, None, None, None] * v.astype(jnp.float32)
    motion_weight = float(cfg.get("loss", {}).get("motion_weight", 0.0))
    per_example = weighted_mse(x0_hat, x0, batch["video"], batch["reference"], motion_weight)
    # the plain x0 error beside the (weighted) loss, comparable across weightings
    metrics = {"x0_mse": jnp.mean((x0_hat - x0) ** 2),
               "velocity_mse": jnp.mean((v - objectives.flow_target(x0, noise)) ** 2)}
    return per_example, metrics

  def data_source(self, split):
    from talkjax.models.memo.data import clip_windows
    return clip_windows(self.config, split)



def noised_past(past, rng, max_std: float):
  """Past latents (B, P, h, w, C) plus Gaussian noise of a std drawn per example uniformly
  in [0, max_std] (model.clip.past_noise; unchanged at 0)."""
  if not max_std:
    return past
  level, noise = jax.random.split(rng)
  std = max_std * jax.random.uniform(level, (past.shape[0], 1, 1, 1, 1))
  return past + std * jax.random.normal(noise, past.shape)


def training_anchor(clean, noised, reference, keep_past, noised_anchor: bool):
  """The anchor (model.flow.anchor = "last_past") of each example (B, h, w, C): its last
  past frame's latents, with the past noise when `noised_anchor` (model.flow.anchor_noised),
  or the portrait's where the past was dropped (those frames are black; the sampler's first
  clip anchors on the portrait, whose copies are its past)."""
  last = (noised if noised_anchor else clean)[:, -1]
  return jnp.where(keep_past[:, None, None, None], last, reference)


def weighted_mse(x0_hat, x0, video, reference, motion_weight: float):
  """Per-example (B,) mean squared error of latents (B, F, h, w, C), each latent pixel
  weighing 1 + motion_weight x the mean absolute difference of its frame's pixels from the
  portrait's over its patch (video (B, F, R, R, 3), reference (B, R, R, 3); R = k h)."""
  error = (x0_hat - x0) ** 2
  if motion_weight:
    b, f, r = video.shape[:3]
    h, k = x0.shape[2], r // x0.shape[2]
    d = jnp.mean(jnp.abs(video - reference[:, None]), axis=-1)
    moving = jnp.mean(d.reshape(b, f, h, k, h, k), axis=(3, 5))[..., None]
    error = error * (1.0 + motion_weight * moving)
  return jnp.mean(error, axis=(1, 2, 3, 4))
