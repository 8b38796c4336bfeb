"""MEMO's model and training task at tiny widths: the release's parameter layout, the
paper-size parameter counts, and a loss that falls on SynthTalk clips."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from talkjax import config as cfg
from talkjax.commands.train import count_parameters
from talkjax.convert.torch_names import flatten
from talkjax.models import make_task

TINY = ["data.synthtalk.identities=3", "data.synthtalk.clips=4", "data.synthtalk.seconds=1.6",
        "model.clip.frames=4", "model.clip.past=4", "data.batch_size=2"]


@pytest.fixture(scope="module")
def task(tmp_path_factory):
  data = tmp_path_factory.mktemp("memo") / "synthtalk"
  config = cfg.load_config("memo/synthtalk_tiny_stage2", [f"data.path={data}", *TINY])
  return make_task(config)


@pytest.fixture(scope="module")
def batch(task):
  source = task.data_source("train")
  return {k: np.stack([source[i][k] for i in range(2)]) for k in source[0]}


def test_parameters_follow_the_released_checkpoints_layout(task, batch):
  shapes = nn.meta.unbox(jax.eval_shape(task.init, jax.random.PRNGKey(0), batch))
  flat = {"/".join(k): v.shape for k, v in flatten(shapes["trainable"]).items()}
  diffusion = {k[len("diffusion_net/"):]: v for k, v in flat.items()
               if k.startswith("diffusion_net/")}
  # the spatial part is the SD UNet's, unchanged (what stage 1 and SD weights fill)
  reference = {k[len("reference_net/"):]: v for k, v in flat.items()
               if k.startswith("reference_net/")}
  assert {k for k in diffusion if "_modules_" not in k} == set(reference)
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


def test_a_few_training_steps_reduce_the_loss(task, batch):
  params = nn.meta.unbox(jax.jit(task.init)(jax.random.PRNGKey(0), batch))
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
  for _ in range(60):
    trainable, opt, loss = step(trainable, opt)
    losses.append(float(loss))
  assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses
