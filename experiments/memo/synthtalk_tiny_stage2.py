"""MEMO stage 2 on SynthTalk at 64 px, small enough for a CPU: the paper's architecture and
recipe at tiny widths (two UNet resolutions of 32 / 64 channels, 4 heads, 64-d audio and
image tokens), log-mel speech features in place of wav2vec2 and a learned identity encoder
in place of ArcFace embeddings (SynthTalk ships neither).

  talkjax train --config experiments/memo/synthtalk_tiny_vae.py --workdir runs/memo_tiny_vae
  talkjax train --config experiments/memo/synthtalk_tiny_stage1.py --workdir runs/memo_tiny_stage1
  talkjax train --config experiments/memo/synthtalk_tiny_emotion.py --workdir runs/memo_tiny_emotion
  talkjax train --config experiments/memo/synthtalk_tiny_stage2.py:warmup --workdir runs/memo_tiny_warmup
  talkjax train --config experiments/memo/synthtalk_tiny_stage2.py --workdir runs/memo_tiny
"""

from talkjax_experiments.memo._common import memo_config, stage2, tiny_synthtalk


TINY_UNET = dict(in_channels=4, out_channels=4, block_out_channels=(32, 64),
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                 attention_head_dim=4, cross_attention_dim=64, norm_num_groups=8)
# Light enough that encoding the 17 frames of an example costs less than denoising them.
# scaling_factor = 1 / the std of its latents (3.13 over 256 held-out frames of the
# trained runs/memo_tiny_vae: 4000 steps, held-out PSNR 28.2 dB), as SD's 0.18215 is.
TINY_VAE = dict(block_out_channels=(16, 32, 64), layers_per_block=1, latent_channels=4,
                norm_num_groups=8, mid_block_add_attention=False, scaling_factor=0.32)


def tiny(c):
  """The tiny widths and data, shared by the tiny stages."""
  m = c.model
  m.memory.update(heads=4, groups=8)
  m.audio.update(kind="logmel", dim=64, tokens=8, layers=1, channels=80, hidden=128)
  m.identity.update(encoder="learned", dim=64, channels=(16, 32, 64))
  m.clip.update(frames=8, past=8)
  # Deviation, labelled (the release predicts the velocity): the DiffusionNet in EDM-style
  # scalings for rectified flow (Memo.denoise). Trained from scratch, the chain with it met
  # lip-sync and mouth amplitude after 600 joint steps, which the velocity chain had not
  # after 2500 (experiments/memo/README.md).
  m.flow.output = "preconditioned"
  # Deviation, labelled (the release has no such path): the portrait's latents also enter
  # the DiffusionNet after conv_in (zero-initialised conv, networks.PortraitInput). Stage 1
  # with it, on the same batches, errs 0.116 at sigma 1 after its 1200 steps against 0.198
  # without; fine-tunes with it held identity better clip after clip (the README).
  m.portrait_input = True
  c.sample.fps = 25
  m.weights.vae = "runs/memo_tiny_vae"
  c.data.update(tiny_synthtalk())
  c.data.batch_size = 8
  c.data.stride = 4
  c.data.num_examples = 0
  c.data.eval_examples = 0
  c.optimizer.lr = 3e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 100
  # Deviation, labelled: no robust loss masking. The release masks examples whose x0 loss
  # exceeds 0.1 while it fine-tunes a model that already denoises; trained from scratch,
  # the tiny stage 1 masked 55 % of its examples at 0.1 (the high-noise ones, whose loss
  # starts large), so it never learned to begin a sample from noise.
  c.train.robust_loss_threshold = 0.0
  # joint stage 2: shortened with the other tiny stages to fit about 2.5 h on 2 CPU cores
  # (the paper trains far longer; measured: experiments/memo/README.md)
  c.train.steps = 800
  c.train.log_every = 50
  c.checkpoint.every = 200
  return c


def get_config(arg=None):
  c = tiny(memo_config(unet=TINY_UNET, vae=TINY_VAE, resolution=64))
  # sampling reads the emotion from the audio with this classifier when none is given
  # (experiments/memo/synthtalk_tiny_emotion.py); "" = the null label
  c.model.emotion.classifier = "runs/memo_tiny_emotion"
  # Deviation, labelled (stage 2 only; stage 1 has no audio to move a mouth by): latent
  # pixels that differ from the portrait weigh more in the loss (1 + 20 x their mean
  # absolute pixel difference, as in the tiny renderers' L1). Trained with a plain mean,
  # the joint stage's mouths barely moved (amplitude 0.33 x ground truth's after 800
  # steps): at 64 px the mouth is a few of the 256 latent pixels.
  c.loss.motion_weight = 20.0
  if arg != "warmup":
    # Deviation, labelled: 10 % of the joint stage's examples are the sampler's unguided
    # branch (the classifier-free rate of SD's text dropout). Trained from scratch with the
    # release's independent draws alone, the tiny model guided its samples into colour
    # noise (experiments/memo/README.md). The joint stage is where every layer that branch
    # uses learns (the warm-up freezes the reference side).
    c.model.dropout.unguided = 0.1
    # Deviation, labelled: the gradient also flows through the past frames' path into the
    # memory (their ReferenceNet features, the keys and values written), which the release,
    # fine-tuning pretrained modules, holds fixed. Measured from the same checkpoint on the
    # same batches (experiments/memo/README.md): after 300 joint steps the clean-frame error
    # from pure noise was 0.076 with it, 0.088 without.
    c.model.memory.backprop_past = True
    # Deviation, labelled: each example's past latents get noise of a std drawn up to 0.5
    # (model.clip.past_noise). Training sees ground truth's past, sampling its own; in two
    # A/Bs on the same batches (joint 300 -> 600; 1400 + 300 at lr 1e-4) it narrowed the
    # identity gap on 4 and 8 held-out clips from 0.228 to 0.196 and from 0.209 to 0.184, lip-sync
    # unchanged (experiments/memo/README.md).
    c.model.clip.past_noise = 0.5
  return stage2(c, arg, stage1_workdir="runs/memo_tiny_stage1",
                warmup_workdir="runs/memo_tiny_warmup", warmup_steps=300)
