"""Settings shared by the INFP experiments (not an experiment itself)."""

import ml_collections

from talkjax_experiments._synthtalk import synthtalk_data


def tiny_dyadic_synthtalk():
  """The 64 px dyadic set both tiny stages train on: 800 conversations of 6 s (several
  speaking and listening turns each; the partner's track beside the agent's)."""
  d = synthtalk_data("~/.cache/talkjax/synthtalk_dyadic_i400", identities=400, clips=800,
                     seconds=6.0, resolution=64)
  d.synthtalk.dyadic = True
  d.batch_size = 8
  d.num_examples = 0
  d.eval_examples = 0
  d.worker_count = 0
  d.shuffle = True
  return d


def stage1_config(*, resolution: int, channels, latent: int, directions: int = 20):
  from talkjax.defaults import base_config
  c = base_config()
  c.family = "infp_stage1"
  m = c.model
  m.resolution, m.channels, m.disc_channels = resolution, tuple(channels), tuple(channels)
  m.latent, m.directions = latent, directions
  # Kept regions of the face the motion encoder reads: (top, left, bottom, right) fractions
  # of the face crop (eyes with brows; mouth with the chin's top).
  m.regions = ((0.18, 0.12, 0.52, 0.88), (0.55, 0.22, 0.9, 0.78))
  return c


def stage2_config(*, window: int, previous: int, hidden: int, layers: int, heads: int,
                  slots: int, style_frames: int):
  """Stage 2: the guider (two banks of `slots` entries) and the denoiser of `layers` blocks
  [self -> motion -> temporal attention]. The paper does not publish its sizes, chunk length
  or diffusion recipe: these follow IF-MDM's (x0 prediction, cosine schedule, condition
  dropout 0.3, AdamW, EMA)."""
  from talkjax.defaults import base_config
  c = base_config()
  c.family = "infp_stage2"
  c.stage1 = ml_collections.ConfigDict(dict(config="", workdir=""))
  m = c.model
  m.window, m.previous, m.hidden, m.layers, m.heads, m.mlp_ratio = (window, previous, hidden,
                                                                     layers, heads, 4)
  m.motion_dim = 20
  # The denoiser sees the portrait's motion in every chunk (denoiser.py: a long chain of
  # chunks otherwise drifts to the average resting face; not in the paper).
  m.anchor = True
  m.guider = ml_collections.ConfigDict(dict(verbal_slots=slots, nonverbal_slots=slots,
                                            heads=heads))
  # frames of a reference stretch of the same clip the style encoder reads (0: no style)
  m.style = ml_collections.ConfigDict(dict(frames=style_frames))
  # The portrait encoder (portrait.py): the mood the portrait's pixels show, beside the
  # anchor (not in the paper). resolution: its input size (0: off); frames: how many of each
  # training clip's frames it is shown (the first and random others).
  m.portrait = ml_collections.ConfigDict(dict(resolution=0, channels=(16, 32, 64, 64),
                                              frames=8))
  # level: each log-mel frame's loudness beside its LayerNormed features (guider.py; the
  # norm removes it and the mouth follows it); log-mel only.
  m.audio = ml_collections.ConfigDict(dict(kind="logmel", n_mels=40, wav2vec2="", layer=-1,
                                           hidden_size=768, context_s=0.2, level=True))
  c.diffusion = ml_collections.ConfigDict(dict(steps=1000, schedule="cosine", prediction="x0",
                                               condition_dropout=0.3, previous_dropout=0.1,
                                               previous_noise=0.5, rollout=0.0,
                                               rollout_steps=5, anchor_frame="first"))
  # anchor_frame: which frame of a training clip gives the anchor: "first" (what sampling
  # gives: the portrait) or "any" frame of the clip (data.py; tried for portraits caught
  # mid-word, not kept: experiments/infp/README.md).
  c.loss = ml_collections.ConfigDict(dict(velocity=1.0))
  # lookahead (frames): a chunk keeps window - lookahead frames, so each kept frame has the
  # speech after it in view (lips lead the sound); it adds to a stream's latency.
  # crossfade (frames, <= lookahead): a chunk's first frames blend into the lookahead frames
  # the chunk before made for the same moments (generate.py), so chunks join without a jump.
  c.sample = ml_collections.ConfigDict(dict(steps=25, guidance=1.5, lookahead=4, crossfade=4))
  c.train.ema_decay = 0.999
  c.optimizer.lr = 1e-3
  c.optimizer.weight_decay = 0.01
  c.optimizer.warmup_steps = 100
  return c
