"""Settings shared by the IF-MDM experiments (not an experiment itself)."""

import ml_collections

from talkjax_experiments._synthtalk import synthtalk_data, tiny_synthtalk  # noqa: F401


def tiny_synthtalk_speech():
  """The larger 64 px set the tiny stage 2 trains on: 1600 clips of 4 s (stage 1's 400 gave
  held-out lip-sync 0.941 of ground truth's, these 0.955; motion codes are cheap to read)."""
  return synthtalk_data("~/.cache/talkjax/synthtalk_tiny_i800", identities=800, clips=1600,
                        seconds=4.0, resolution=64)


def stage2_config(*, window: int, hidden: int, layers: int, heads: int):
  """Stage 2 defaults, sized by the arguments. From the paper: A0 = 6 layers, 512 hidden, 8
  heads; 64-frame windows; condition dropout 0.3; AdamW 1e-4; EMA 0.9999. The diffusion
  recipe here (x0 prediction, cosine schedule, weight decay 0.01) is the tiny configs'
  choice, not the paper's; `paper_diffusion` sets the paper's."""
  from talkjax.defaults import base_config
  c = base_config()
  c.family = "ifmdm_stage2"
  # overrides: "KEY=VALUE;..." applied to the named stage-1 config when it is built from
  # its name (random-weight benchmarks), e.g. "model.renderer=fast".
  c.stage1 = ml_collections.ConfigDict(dict(config="", workdir="", overrides=""))
  m = c.model
  m.window, m.hidden, m.layers, m.heads, m.mlp_ratio = window, hidden, layers, heads, 4
  m.motion_dim = 20
  # kind: logmel (n_mels bins) | wav2vec2 (a converted folder, hidden_size, which layer).
  # train_features: "chunked" computes each training window's features in the step the way
  # sampling computes a chunk's (same left context, same function); "whole_clip" caches
  # them over whole clips (cheaper with wav2vec2, but not what sampling feeds the model).
  # level: each log-mel frame's loudness beside its LayerNormed features (motion.py; the
  # norm removes it and the mouth follows it); log-mel only; not in the paper.
  m.audio = ml_collections.ConfigDict(dict(kind="logmel", n_mels=80, wav2vec2="", layer=-1,
                                           hidden_size=768, context_s=0.2,
                                           train_features="chunked", level=False))
  c.diffusion = ml_collections.ConfigDict(dict(steps=1000, schedule="cosine", prediction="x0",
                                               condition_dropout=0.3, learn_sigma=False,
                                               vlb_weight=0.001))
  c.loss = ml_collections.ConfigDict(dict(velocity=0.0))
  # Sampling defaults (each is a knob of `talkjax sample`).
  # lookahead (frames) is not a per-request knob: it sets the frames a chunk keeps
  # (model.window - lookahead), so a model's programs are built with it.
  c.sample = ml_collections.ConfigDict(dict(steps=10, guidance=2.0, mean="image", std="scale",
                                            std_scale=1.0, std_value=0.2, lookahead=0))
  c.train.ema_decay = 0.9999
  c.optimizer.lr = 1e-4
  c.optimizer.weight_decay = 0.01
  return c


def paper_diffusion(c):
  """The paper's diffusion recipe (from the authors' code): epsilon prediction with a learned
  variance (hybrid loss, lambda 0.001), linear 1000-step schedule, AdamW without weight decay."""
  c.diffusion.prediction = "eps"
  c.diffusion.schedule = "linear"
  c.diffusion.steps = 1000
  c.diffusion.learn_sigma = True
  c.diffusion.vlb_weight = 0.001
  c.optimizer.weight_decay = 0.0
  return c


def hdtf_data(path: str):
  """HDTF at 512 px, built by `talkjax data build hdtf --raw ~/HDTF --out data/hdtf`
  (datasets/hdtf/README.md); add MEAD or your own clips with data.mixture."""
  from talkjax_experiments._real import real_data
  d = real_data("hdtf", path, batch_size=32)
  d.near_pairs = 0.0
  d.near_gap = 3
  return d
