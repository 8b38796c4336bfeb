"""Settings shared by the MEMO experiments (not an experiment itself).

`memo_config` holds the paper's recipe and the release's architecture (from the paper and
the authors' public code); the size functions only shrink widths and counts.
"""

import ml_collections

from talkjax_experiments._synthtalk import tiny_synthtalk  # noqa: F401  (the tiny configs' data)

# Stable Diffusion 1.5's UNet (diffusers UNet2DConditionModel config), the layout of both
# the ReferenceNet and the DiffusionNet's spatial part.
SD15_UNET = dict(in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 layers_per_block=2, attention_head_dim=8, cross_attention_dim=768,
                 norm_num_groups=32)

# The SD "ft-mse" VAE (stabilityai/sd-vae-ft-mse) the release decodes with.
SD_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
              norm_num_groups=32, scaling_factor=0.18215)


def memo_config(*, unet: dict, vae: dict, resolution: int):
  """The paper's recipe at the given network sizes (stage 2: all modules, joint training)."""
  from talkjax.defaults import base_config
  c = base_config()
  c.family = "memo"
  m = c.model
  m.resolution = resolution
  m.unet = ml_collections.ConfigDict(unet)
  m.vae = ml_collections.ConfigDict(vae)
  # The memory modules (the release's motion_module_kwargs): 8 heads, one transformer block
  # of two temporal self-attentions + GEGLU feed-forward, memory decay 0.9. One block is
  # what the paper's size implies: the DiffusionNet then counts 1.678 B parameters (the
  # paper: 1.68 B); two blocks would give 2.09 B. Positional encoding is off here; the
  # release's checkpoint tells (a `pos_encoder.pe` buffer), and its importer sets it.
  m.memory = ml_collections.ConfigDict(dict(heads=8, blocks=1, attentions=2,
                                            position_max_len=0, decay=0.9, groups=32,
                                            backprop_past=False))
  # Speech: wav2vec2-base, 12 hidden layers x 768, a 5-frame window -> 32 tokens of 768.
  m.audio = ml_collections.ConfigDict(dict(kind="wav2vec2", wav2vec2="", dim=768, tokens=32,
                                           window=5, layers=12, channels=768, hidden=512))
  # Identity: a 512-d face embedding -> 4 tokens ("given": ArcFace embeddings in the data,
  # and in sampling the portrait's from the ONNX face recogniser `recognizer` names, the
  # release's glintr100.onnx; "learned": a small encoder of the reference image, `channels`
  # its conv widths).
  m.identity = ml_collections.ConfigDict(dict(encoder="given", dim=512, tokens=4,
                                              channels=(32, 64, 128, 256), recognizer=""))
  # classifier: an audio_emotion training folder that reads the emotion from the audio when
  # a request names none ("" = the null label)
  m.emotion = ml_collections.ConfigDict(dict(classes=9, dropout=0.3, classifier=""))
  # past_noise: in training, each example's past latents get Gaussian noise of a std drawn
  # uniformly in [0, past_noise] (0 = the release; talkjax/models/memo/tasks.py)
  m.clip = ml_collections.ConfigDict(dict(frames=16, past=16, past_noise=0.0))
  # unguided: how often an example is exactly the sampler's unguided branch (0 = the
  # release, whose draws are independent; talkjax/models/memo/tasks.py)
  # past_fill: what a dropped past holds, "black" frames (the release) or "portrait" copies
  # (what the sampler's first clip holds; a deviation where set)
  m.dropout = ml_collections.ConfigDict(dict(image=0.05, audio=0.05, past=0.05, unguided=0.0,
                                             past_fill="black"))
  # output: what the DiffusionNet predicts, "velocity" (the release) or "preconditioned"
  # (EDM-style scalings, talkjax/models/memo/model.py); anchor "last_past" (preconditioned
  # only; a deviation where set: the release has none) makes that output a residual on the
  # last past frame, of std anchor_std; anchor_noised: in training the anchor carries the
  # past noise (model.clip.past_noise) as the past frames do
  m.flow = ml_collections.ConfigDict(dict(logit_mean=0.0, logit_std=1.0, output="velocity",
                                          anchor="none", anchor_std=1.0, anchor_noised=False))
  # portrait_input (a deviation where True: the release has none): the portrait's latents
  # also enter the DiffusionNet through a zero-initialised conv added to conv_in's output
  m.portrait_input = False
  m.remat = False
  # Pretrained weights (talkjax/models/memo/weights.py): vae (required) and, for stage 1,
  # the SD 1.5 UNet that fills both nets' spatial layers.
  m.weights = ml_collections.ConfigDict(dict(vae="", unet=""))
  c.train.robust_loss_threshold = 0.1
  # motion_weight > 0 (a deviation where set: the release's loss is a plain mean): latent
  # pixels whose frame differs from the portrait weigh 1 + motion_weight x that difference
  c.loss = ml_collections.ConfigDict(dict(motion_weight=0.0))
  # The release samples at 30 fps; talkjax's generation layer runs at 25 (deviation,
  # labelled: the speech features follow the frame rate, so the model sees 25 fps speech).
  c.sample = ml_collections.ConfigDict(dict(steps=20, guidance=3.5, fps=25))
  c.optimizer.lr = 1e-5
  c.optimizer.schedule = "constant"
  c.optimizer.weight_decay = 0.01
  c.optimizer.clip_norm = 1.0
  return c


# Paths the stage-2 warm-up freezes: everything stage 1 trained (the ReferenceNet, the
# identity side, the DiffusionNet's spatial layers); the audio and memory modules and the
# audio projection learn.
STAGE1_MODULES = (r"^trainable/(reference_net|image_proj|identity_encoder)/",
                  r"^trainable/diffusion_net/(?!.*/(audio|motion)_modules_\d+/)")


def emotion_classifier_config():
  """The audio emotion classifier (family `audio_emotion`): 3 s of speech as 40 log-mel bins
  -> three 1-D convolutions -> mean/std pooling -> MEMO's 9 emotions; data set by the caller."""
  from talkjax.defaults import base_config
  c = base_config()
  c.family = "audio_emotion"
  c.model.emotion_audio = ml_collections.ConfigDict(dict(window_s=3.0, n_mels=40, hidden=128,
                                                         conv_channels=(64, 64, 64)))
  return c


def paper_data(batch_size: int):
  """HDTF and MEAD built at 512 px (talkjax data build hdtf|mead --out data/hdtf|data/mead),
  mixed 1:1. Deviation, labelled: the paper also trains on VFHQ, CelebV-HQ and MultiTalk;
  build any of them with `talkjax data build clips` and add it to data.mixture."""
  from talkjax_experiments._real import real_data
  return real_data("hdtf", "data/hdtf", mixture=("data/hdtf:1", "data/mead:1"),
                   batch_size=batch_size)


def stage1(c):
  """Stage 1, face-domain adaptation: the DiffusionNet with reference attention only,
  denoising one frame of a clip given the portrait (no audio, no memory, no past)."""
  c.model.modules = ("reference",)
  c.model.clip.update(frames=1, past=0)
  c.model.dropout.update(audio=0.0, past=0.0)
  return c


def stage2(c, arg, *, stage1_workdir: str, warmup_workdir: str, warmup_steps: int):
  """Stage 2 from stage 1's weights. arg "warmup": the new modules learn with stage 1's
  frozen (real freezing: no gradient, no optimizer state); otherwise joint training of
  everything from the warm-up run."""
  if arg not in (None, "warmup", "joint"):
    from talkjax.errors import ConfigError
    raise ConfigError(f"unknown stage-2 phase {arg!r}", fix="use CONFIG:warmup or CONFIG:joint")
  if arg == "warmup":
    c.init_from.workdir = stage1_workdir
    c.optimizer.freeze = STAGE1_MODULES
    c.train.steps = warmup_steps
  else:
    c.init_from.workdir = warmup_workdir
  return c
