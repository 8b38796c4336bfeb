"""MEMO at tiny widths, the model and its training: the release's parameter layout, the
paper-size parameter counts, the stages' split, a loss that falls on SynthTalk clips, and
what the training options (unguided examples, the dropped past's fill, the gradient through
the memory) do. Sampling: test_memo_sampling.py."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from memo_tiny import TINY, batch, config, params, task  # noqa: F401 (fixtures)

from talkjax import config as cfg
from talkjax.commands.train import count_parameters
from talkjax.convert.torch_names import flatten
from talkjax.errors import TalkjaxError
from talkjax.models import make_task
from talkjax.models.memo.generate import lively
from talkjax.nn.unet import layer_sites


def test_parameters_follow_the_released_checkpoints_layout(task, batch):
  shapes = nn.meta.unbox(jax.eval_shape(task.init, jax.random.PRNGKey(0), batch))
  flat = {"/".join(k): v.shape for k, v in flatten(shapes["trainable"]).items()}
  diffusion = {k[len("diffusion_net/"):]: v for k, v in flat.items()
               if k.startswith("diffusion_net/")}
  # the spatial part is the SD UNet's, unchanged (what stage 1 and SD weights fill)
  reference = {k[len("reference_net/"):]: v for k, v in flat.items()
               if k.startswith("reference_net/")}
  assert {k for k in diffusion if "_modules_" not in k and not k.startswith("portrait_in/")
          } == set(reference)
  # the tiny configs' labelled deviation: the portrait's latents into conv_in's output
  assert diffusion["portrait_in/conv/kernel"] == (3, 3, 4, 32)
  want = {
      "down_blocks_0/audio_modules_0/transformer_blocks_0/attn2/add_k_proj/kernel": (64, 4, 8),
      "down_blocks_0/audio_modules_0/transformer_blocks_0/norm1/class_embedder/embedding_table/embedding": (10, 32),
      "down_blocks_0/audio_modules_0/proj_in/kernel": (32, 32),
      "down_blocks_0/motion_modules_0/temporal_transformer/transformer_blocks_0/attention_blocks_1/to_q/kernel": (32, 4, 8),
      "down_blocks_1/motion_modules_0/temporal_transformer/norm/scale": (64,),
      "mid_block/audio_modules_0/proj_in/kernel": (64, 64),
      "mid_block/motion_modules_0/temporal_transformer/proj_out/kernel": (64, 64),
      # the release's quirk: an up block's audio modules are as wide as its input (32)
      "up_blocks_1/audio_modules_0/proj_in/kernel": (32, 32),
      "up_blocks_1/audio_modules_0/transformer_blocks_0/audio_ff/net_2/kernel": (256, 64),
      "up_blocks_0/motion_modules_1/temporal_transformer/transformer_blocks_0/ff_norm/scale": (64,),
  }
  for k, shape in want.items():
    assert diffusion.get(k) == shape, k
  # no audio module where the block has no transformer, and the last one feeds no stream
  assert not any(k.startswith(("down_blocks_1/audio", "up_blocks_0/audio")) for k in diffusion)
  final = [k for k in diffusion if k.startswith("up_blocks_1/audio_modules_1/")]
  assert final and not any("audio_ff" in k or "to_add_out" in k or "audio_norm3" in k
                           for k in final)
  assert flat["image_proj/proj/kernel"] == (64, 4 * 64)
  assert flat["audio_proj/proj1/kernel"] == (5 * 1 * 80, 128)
  assert flat["audio_proj/proj3/kernel"] == (128, 8 * 64)


def test_paper_config_counts_the_released_networks_sizes_without_allocating():
  config = cfg.load_config("memo/paper_512_stage2")
  _, _, parts = count_parameters(config)
  assert abs(parts["trainable/reference_net"] / 0.86e9 - 1) < 0.05, parts
  assert abs(parts["trainable/diffusion_net"] / 1.68e9 - 1) < 0.05, parts


def test_stage_1_is_the_spatial_model_and_the_warmup_freezes_exactly_it(config):
  from talkjax.train.state import split_params
  overrides = [f"data.path={config.data.path}", *TINY]
  one = make_task(cfg.load_config("memo/synthtalk_tiny_stage1", overrides[:4]))  # its data
  example = one.data_source("train")[0]           # one frame, no past frames
  assert example["video"].shape == (1, 64, 64, 3) and example["past"].shape == (0, 64, 64, 3)
  shapes1 = flatten(nn.meta.unbox(jax.eval_shape(one.init, jax.random.PRNGKey(0),
                                                 one.example_batch(1))))
  warm = cfg.load_config("memo/synthtalk_tiny_stage2:warmup", overrides)
  task = make_task(warm)
  shapes2 = nn.meta.unbox(jax.eval_shape(task.init, jax.random.PRNGKey(0),
                                         task.example_batch(1)))
  trainable, frozen = split_params(shapes2, tuple(warm.optimizer.freeze))
  learn = {"/".join(k) for k in flatten(trainable)}
  still = {"/".join(k) for k in flatten(frozen)}
  stage1_paths = {"/".join(k) for k in shapes1}
  # every stage-1 parameter exists in stage 2 with its shape (init_from copies them all),
  # and the warm-up freezes exactly those
  assert all(flatten(shapes2)[k].shape == v.shape for k, v in shapes1.items())
  assert still == stage1_paths
  assert learn and all("_modules_" in p or p.startswith("trainable/audio_proj/") for p in learn)
  assert warm.init_from.workdir == "runs/memo_tiny_stage1"
  joint = cfg.load_config("memo/synthtalk_tiny_stage2", overrides)
  assert joint.init_from.workdir == "runs/memo_tiny_warmup" and not joint.optimizer.freeze


def test_a_few_training_steps_reduce_the_loss(task, batch, params):
  trainable, frozen = params["trainable"], params["frozen"]
  tx = optax.adam(1e-3)
  opt = tx.init(trainable)
  rng = jax.random.PRNGKey(1)   # the same noise, sigmas and dropout every step

  @jax.jit
  def step(p, opt):
    loss, grads = jax.value_and_grad(
        lambda p: task.loss({"trainable": p, "frozen": frozen}, batch, rng)[0].mean())(p)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(p, updates), opt, loss

  losses = []
  for _ in range(14):   # measured: 0.656 -> 0.311 (0.47x; motion-weighted, the config's 20)
    trainable, opt, loss = step(trainable, opt)
    losses.append(float(loss))
  assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses


def test_an_unguided_example_sees_hears_and_feels_none_of_its_conditions(config, batch,
                                                                          params):
  """dropout.unguided trains exactly the sampler's unguided branch: the portrait (identity
  tokens and reference keys), the speech and the emotion then change nothing, while the
  same example guided depends on each."""
  params = lively({"trainable": params["trainable"]}, scale=0.2) | {"frozen": params["frozen"]}
  other = {"reference": batch["reference"][:, ::-1], "speech": batch["speech"][::-1] * 3.0 + 1.0,
           "emotion": (batch["emotion"] + 3) % 9}
  changed = [batch] + [batch | {k: v} for k, v in other.items()]
  rng = jax.random.PRNGKey(3)

  def losses(unguided):
    c = config.copy_and_resolve_references()
    c.model.dropout.update(image=0.0, audio=0.0, past=0.0, unguided=unguided)
    c.model.emotion.dropout = 0.0
    c.loss.motion_weight = 0.0   # the weights read the portrait; the model must not
    task = make_task(c)
    loss = jax.jit(lambda b: task.loss(params, b, rng)[0])
    return np.stack([np.asarray(loss(b)) for b in changed])

  unguided = losses(1.0)
  np.testing.assert_allclose(unguided[1:], unguided[:1].repeat(3, 0), rtol=1e-5, atol=1e-7)
  guided = losses(0.0)
  gaps = np.abs(guided[1:] - guided[:1]).max(axis=1) / guided[0].mean()
  # the portrait, the speech, the emotion each matter (random weights: the portrait least)
  assert (gaps > 1e-4).all(), gaps


def test_a_dropped_past_can_be_copies_of_the_portrait_as_the_first_clip_has(config, batch,
                                                                            params):
  """model.dropout.past_fill = "portrait": a dropped past is the portrait's copies (what the
  sampler's first clip reads), not the release's black frames."""
  params = lively({"trainable": params["trainable"]}, scale=0.2) | {"frozen": params["frozen"]}
  rng = jax.random.PRNGKey(3)

  def loss(**dropout):
    c = config.copy_and_resolve_references()
    c.model.dropout.update(**dropout)
    task = make_task(c)
    return jax.jit(lambda b: task.loss(params, b, rng)[0])

  copies = batch | {"past": np.repeat(batch["reference"][:, None], batch["past"].shape[1], 1)}
  dropped = np.asarray(loss(past=1.0, past_fill="portrait")(batch))
  kept = loss(past=0.0)
  np.testing.assert_allclose(dropped, np.asarray(kept(copies)), rtol=1e-5)
  assert np.abs(dropped - np.asarray(kept(batch))).max() > 1e-4 * dropped.mean()
  with pytest.raises(TalkjaxError, match="past_fill"):
    loss(past_fill="grey")


def test_the_tiny_joint_stage_trains_what_the_memory_holds_and_the_paper_config_does_not(
    config, params):
  """model.memory.backprop_past (the tiny joint stage's labelled deviation) lets the loss's
  gradient reach the past frames' features through `remember`; the release's setting,
  kept by the paper configs, holds them fixed."""
  paper = cfg.load_config("memo/paper_512_stage2")
  assert config.model.memory.backprop_past and not paper.model.memory.backprop_past
  for flag in (True, False):
    c = config.copy_and_resolve_references()
    c.model.memory.backprop_past = flag
    memo = make_task(c).memo
    memory = memo.empty_memory(1, 4, 4)
    sites = {s.name: s for s in layer_sites(memo.config.unet, 1, 4, 4)}
    past = {name: np.random.default_rng(0).standard_normal(
        (1, 3, sites[name].height, sites[name].width, sites[name].channels)).astype(np.float32)
        for name in memory}
    total = lambda p: sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(
        memo.remember(params["trainable"]["diffusion_net"], memory, p)))
    grads = jax.grad(total)(past)
    assert all(bool(np.any(g != 0)) == flag for g in grads.values()), flag
