"""Golden sharding tables: how every parameter of each family is laid out on a
(data=2, fsdp=2, tensor=2) mesh under the default rules, at training and at sampling time.
A change of rules, names or layout shows up here in review. (The test-bed transformer"s
table is in tests/test_parallel.py.)"""

import jax
import pytest
from jax.sharding import PartitionSpec as P

from talkjax import config as cfg
from talkjax import parallel, trees
from talkjax.models import make_task, random_generator
from talkjax.pipelines.sampler import Sampler

# ifmdm/synthtalk_tiny_stage1
IFMDM_STAGE1 = {
    "trainable/discriminator/down_0/conv1/bias": P("fsdp"),
    "trainable/discriminator/down_0/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/down_0/conv2/bias": P("fsdp"),
    "trainable/discriminator/down_0/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/down_1/conv1/bias": P("fsdp"),
    "trainable/discriminator/down_1/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/down_1/conv2/bias": P("fsdp"),
    "trainable/discriminator/down_1/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/down_1/skip/bias": P("fsdp"),
    "trainable/discriminator/down_1/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/down_2/conv1/bias": P("fsdp"),
    "trainable/discriminator/down_2/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/down_2/conv2/bias": P("fsdp"),
    "trainable/discriminator/down_2/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/down_2/skip/bias": P("fsdp"),
    "trainable/discriminator/down_2/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/down_3/conv1/bias": P("fsdp"),
    "trainable/discriminator/down_3/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/down_3/conv2/bias": P("fsdp"),
    "trainable/discriminator/down_3/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/discriminator/logit/bias": P(None),
    "trainable/discriminator/logit/kernel": P("fsdp", None),
    "trainable/discriminator/stem/bias": P("fsdp"),
    "trainable/discriminator/stem/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/bank/matrix": P("fsdp", None),
    "trainable/generator/decoder/film_0/bias": P("tensor"),
    "trainable/generator/decoder/film_0/kernel": P("fsdp", "tensor"),
    "trainable/generator/decoder/film_1/bias": P("tensor"),
    "trainable/generator/decoder/film_1/kernel": P("fsdp", "tensor"),
    "trainable/generator/decoder/film_2/bias": P("tensor"),
    "trainable/generator/decoder/film_2/kernel": P("fsdp", "tensor"),
    "trainable/generator/decoder/film_3/bias": P("tensor"),
    "trainable/generator/decoder/film_3/kernel": P("fsdp", "tensor"),
    "trainable/generator/decoder/flow_mask_0/bias": P(None),
    "trainable/generator/decoder/flow_mask_0/kernel": P(None, None, None, None),
    "trainable/generator/decoder/flow_mask_1/bias": P(None),
    "trainable/generator/decoder/flow_mask_1/kernel": P(None, None, None, None),
    "trainable/generator/decoder/flow_mask_2/bias": P(None),
    "trainable/generator/decoder/flow_mask_2/kernel": P(None, None, None, None),
    "trainable/generator/decoder/flow_mask_3/bias": P(None),
    "trainable/generator/decoder/flow_mask_3/kernel": P(None, None, None, None),
    "trainable/generator/decoder/from_latent/bias": P("tensor"),
    "trainable/generator/decoder/from_latent/kernel": P("fsdp", "tensor"),
    "trainable/generator/decoder/fuse_0/conv1/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_0/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_0/conv2/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_0/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_0/skip/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_0/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_1/conv1/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_1/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_1/conv2/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_1/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_1/skip/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_1/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_2/conv1/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_2/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_2/conv2/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_2/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_2/skip/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_2/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_3/conv1/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_3/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_3/conv2/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_3/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/fuse_3/skip/bias": P("fsdp"),
    "trainable/generator/decoder/fuse_3/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/image_flow_mask/bias": P(None),
    "trainable/generator/decoder/image_flow_mask/kernel": P(None, None, None, None),
    "trainable/generator/decoder/refine/conv1/bias": P("fsdp"),
    "trainable/generator/decoder/refine/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/refine/conv2/bias": P("fsdp"),
    "trainable/generator/decoder/refine/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/to_rgb/bias": P(None),
    "trainable/generator/decoder/to_rgb/kernel": P(None, None, None, None),
    "trainable/generator/decoder/up_0/conv1/bias": P("fsdp"),
    "trainable/generator/decoder/up_0/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/up_0/conv2/bias": P("fsdp"),
    "trainable/generator/decoder/up_0/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/up_0/skip/bias": P("fsdp"),
    "trainable/generator/decoder/up_0/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/up_1/conv1/bias": P("fsdp"),
    "trainable/generator/decoder/up_1/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/up_1/conv2/bias": P("fsdp"),
    "trainable/generator/decoder/up_1/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/up_1/skip/bias": P("fsdp"),
    "trainable/generator/decoder/up_1/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/up_2/conv1/bias": P("fsdp"),
    "trainable/generator/decoder/up_2/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/up_2/conv2/bias": P("fsdp"),
    "trainable/generator/decoder/up_2/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/up_out/conv1/bias": P("fsdp"),
    "trainable/generator/decoder/up_out/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/decoder/up_out/conv2/bias": P("fsdp"),
    "trainable/generator/decoder/up_out/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_0/conv1/bias": P("fsdp"),
    "trainable/generator/encoder/down_0/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_0/conv2/bias": P("fsdp"),
    "trainable/generator/encoder/down_0/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_1/conv1/bias": P("fsdp"),
    "trainable/generator/encoder/down_1/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_1/conv2/bias": P("fsdp"),
    "trainable/generator/encoder/down_1/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_1/skip/bias": P("fsdp"),
    "trainable/generator/encoder/down_1/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_2/conv1/bias": P("fsdp"),
    "trainable/generator/encoder/down_2/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_2/conv2/bias": P("fsdp"),
    "trainable/generator/encoder/down_2/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_2/skip/bias": P("fsdp"),
    "trainable/generator/encoder/down_2/skip/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_3/conv1/bias": P("fsdp"),
    "trainable/generator/encoder/down_3/conv1/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/down_3/conv2/bias": P("fsdp"),
    "trainable/generator/encoder/down_3/conv2/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/stem/bias": P("fsdp"),
    "trainable/generator/encoder/stem/kernel": P(None, None, None, "fsdp"),
    "trainable/generator/encoder/to_latent/bias": P("fsdp"),
    "trainable/generator/encoder/to_latent/kernel": P(None, "fsdp"),
    "trainable/generator/motion_head/fc_0/bias": P("tensor"),
    "trainable/generator/motion_head/fc_0/kernel": P("fsdp", "tensor"),
    "trainable/generator/motion_head/fc_1/bias": P("tensor"),
    "trainable/generator/motion_head/fc_1/kernel": P("fsdp", "tensor"),
    "trainable/generator/motion_head/fc_2/bias": P("tensor"),
    "trainable/generator/motion_head/fc_2/kernel": P("fsdp", "tensor"),
    "trainable/generator/motion_head/out/bias": P(None),
    "trainable/generator/motion_head/out/kernel": P("tensor", None),
}

# ifmdm/synthtalk_tiny_stage2 model.layers=1
IFMDM_STAGE2 = {
    "frozen/motion_stats/mean": P(),
    "frozen/motion_stats/std": P(),
    "frozen/motion_stats/window_std": P(),
    "trainable/dit/audio_cond/bias": P("tensor"),
    "trainable/dit/audio_cond/kernel": P("fsdp", "tensor"),
    "trainable/dit/audio_in/bias": P("fsdp"),
    "trainable/dit/audio_in/kernel": P(None, "fsdp"),
    "trainable/dit/audio_norm/bias": P(),
    "trainable/dit/audio_norm/scale": P(),
    "trainable/dit/blocks_0/attention/to_k/bias": P("tensor", None),
    "trainable/dit/blocks_0/attention/to_k/kernel": P("fsdp", "tensor", None),
    "trainable/dit/blocks_0/attention/to_out/bias": P("fsdp"),
    "trainable/dit/blocks_0/attention/to_out/kernel": P("tensor", None, "fsdp"),
    "trainable/dit/blocks_0/attention/to_q/bias": P("tensor", None),
    "trainable/dit/blocks_0/attention/to_q/kernel": P("fsdp", "tensor", None),
    "trainable/dit/blocks_0/attention/to_v/bias": P("tensor", None),
    "trainable/dit/blocks_0/attention/to_v/kernel": P("fsdp", "tensor", None),
    "trainable/dit/blocks_0/mlp_in/bias": P("tensor"),
    "trainable/dit/blocks_0/mlp_in/kernel": P("fsdp", "tensor"),
    "trainable/dit/blocks_0/mlp_out/bias": P("fsdp"),
    "trainable/dit/blocks_0/mlp_out/kernel": P("tensor", "fsdp"),
    "trainable/dit/blocks_0/modulation/bias": P("tensor"),
    "trainable/dit/blocks_0/modulation/kernel": P("fsdp", "tensor"),
    "trainable/dit/final/modulation/bias": P("tensor"),
    "trainable/dit/final/modulation/kernel": P("fsdp", "tensor"),
    "trainable/dit/final/out/bias": P(None),
    "trainable/dit/final/out/kernel": P("fsdp", None),
    "trainable/dit/hint_in/bias": P("fsdp"),
    "trainable/dit/hint_in/kernel": P(None, "fsdp"),
    "trainable/dit/mean_in/bias": P("fsdp"),
    "trainable/dit/mean_in/kernel": P(None, "fsdp"),
    "trainable/dit/motion_in/bias": P("fsdp"),
    "trainable/dit/motion_in/kernel": P(None, "fsdp"),
    "trainable/dit/null_audio": P("fsdp"),
    "trainable/dit/null_hint": P("fsdp"),
    "trainable/dit/null_mean": P("fsdp"),
    "trainable/dit/null_std": P("fsdp"),
    "trainable/dit/positions": P(None, "fsdp"),
    "trainable/dit/std_in/bias": P("fsdp"),
    "trainable/dit/std_in/kernel": P(None, "fsdp"),
    "trainable/dit/time/fc_in/bias": P("tensor"),
    "trainable/dit/time/fc_in/kernel": P(None, "tensor"),
    "trainable/dit/time/fc_out/bias": P("fsdp"),
    "trainable/dit/time/fc_out/kernel": P("tensor", "fsdp"),
}

# testbed/talker
TALKER = {
    "trainable/net/audio_in/bias": P("fsdp"),
    "trainable/net/audio_in/kernel": P(None, "fsdp"),
    "trainable/net/emotion_table": P(None, "fsdp"),
    "trainable/net/out/bias": P(None),
    "trainable/net/out/kernel": P("tensor", None),
    "trainable/net/recurrent": P("fsdp", "tensor"),
}

MESH = {"data": 2, "fsdp": 2, "tensor": 2}


def training_layout(name, overrides=()):
  """The layout shard_init gives every parameter, from the abstract tree alone: shard_init
  derives its shardings exactly so and only then initialises into them (that arrays land
  in this layout is tests/test_parallel.py's check; compiling each family's sharded init
  here again cost about a minute of the suite)."""
  config = cfg.load_config(name, list(overrides))
  task = make_task(config)
  abstract = jax.eval_shape(task.init, jax.random.PRNGKey(0), task.example_batch(1))
  shardings = parallel.logical_to_sharding(parallel.logical_specs_of(abstract),
                                           parallel.make_mesh(MESH), config.axis_rules)
  return {k: s.spec for k, s in trees.flatten(shardings).items()}


@pytest.mark.parametrize("golden, name, overrides", [
    (IFMDM_STAGE1, "ifmdm/synthtalk_tiny_stage1", ()),
    (IFMDM_STAGE2, "ifmdm/synthtalk_tiny_stage2", ("model.layers=1",)),
    (TALKER, "testbed/talker", ())])
def test_golden_training_shardings(golden, name, overrides):
  assert training_layout(name, overrides) == golden


# sampling-time path prefix -> the training table and prefix it comes from
SAMPLING = {
    "ifmdm/synthtalk_tiny_stage2": {"renderer/": (IFMDM_STAGE1, "trainable/generator/"),
                                    "dit/": (IFMDM_STAGE2, "trainable/dit/"),
                                    "motion_stats/": (IFMDM_STAGE2, "frozen/motion_stats/")},
    "testbed/talker": {"net/": (TALKER, "trainable/net/")},
}


@pytest.mark.parametrize("name", sorted(SAMPLING))
def test_sampling_lays_parameters_out_as_training_does(name):
  config = cfg.load_config(name, ["model.layers=1"] if "ifmdm" in name else [])
  sampler = Sampler(*random_generator(config), mesh=MESH)
  got = trees.flatten(sampler.params)
  expected = {}
  for prefix, (table, source) in SAMPLING[name].items():
    expected.update({prefix + k[len(source):]: spec for k, spec in table.items()
                     if k.startswith(source)})
  assert {k: x.sharding.spec for k, x in got.items()} == expected


# MEMO: its tree has ~1,100 leaves; the table pins one of each kind of layer (attention
# projections Megatron-style: heads over `tensor`, the model width over `fsdp`).
MEMO_AUDIO = "trainable/diffusion_net/down_blocks_0/audio_modules_0/transformer_blocks_0/"
MEMO_MEMORY = ("trainable/diffusion_net/down_blocks_0/motion_modules_0/temporal_transformer/"
               "transformer_blocks_0/")
MEMO = {
    MEMO_AUDIO + "attn2/add_k_proj/kernel": P("fsdp", "tensor", None),
    MEMO_AUDIO + "attn2/to_add_out/kernel": P("tensor", None, "fsdp"),
    MEMO_AUDIO + "norm1/adaLN_modulation_1/kernel": P("fsdp", "tensor"),
    MEMO_AUDIO + "norm1/class_embedder/embedding_table/embedding": P(None, "fsdp"),
    MEMO_MEMORY + "attention_blocks_0/to_q/kernel": P("fsdp", "tensor", None),
    MEMO_MEMORY + "attention_blocks_1/to_out_0/kernel": P("tensor", None, "fsdp"),
    MEMO_MEMORY + "ff/net_0/proj/kernel": P("fsdp", None, "tensor"),
    "trainable/reference_net/down_blocks_0/attentions_0/transformer_blocks_0/attn1/to_q/kernel":
        P("fsdp", "tensor", None),
    "trainable/audio_proj/proj3/kernel": P("fsdp", "tensor"),
    "trainable/image_proj/proj/kernel": P(None, "fsdp"),
}


def test_golden_memo_shardings():
  layout = training_layout("memo/synthtalk_tiny_stage2", ["data.path=unused"])
  assert {k: layout[k] for k in MEMO} == MEMO


# INFP: its renderer is the shared one (IF-MDM's table above); the table pins the stage-2
# layers of each kind, and sampling must lay every parameter out as training does.
INFP = {
    "trainable/guider/verbal_bank": P(None, "fsdp"),
    "trainable/guider/nonverbal_bank": P(None, "fsdp"),
    "trainable/guider/verbal_read/to_q/kernel": P("fsdp", "tensor", None),
    "trainable/guider/nonverbal_read/to_out/kernel": P("tensor", None, "fsdp"),
    "trainable/guider/fuse/kernel": P("tensor", "fsdp"),
    "trainable/denoiser/blocks_0/motion_attention/to_k/kernel": P("fsdp", "tensor", None),
    "trainable/denoiser/blocks_0/temporal_attention/to_v/kernel": P("fsdp", "tensor", None),
    "trainable/denoiser/blocks_0/mlp_in/kernel": P("fsdp", "tensor"),
    "trainable/denoiser/blocks_0/modulation/kernel": P("fsdp", "tensor"),
    "trainable/denoiser/positions": P(None, "fsdp"),
    "trainable/portrait/encoder/stem/kernel": P(None, None, None, "fsdp"),
    "trainable/portrait/encoder/to_latent/kernel": P(None, "fsdp"),
    "frozen/motion_stats/mean": P(),
}


def test_golden_infp_shardings_and_sampling_uses_the_training_layout():
  small = ("model.layers=1", "model.portrait.channels=(8, 8)")
  layout = training_layout("infp/synthtalk_tiny_stage2", small)
  assert {k: layout[k] for k in INFP} == INFP
  config = cfg.load_config("infp/synthtalk_tiny_stage2", list(small))
  sampler = Sampler(*random_generator(config), mesh=MESH)
  stage1 = training_layout("infp/synthtalk_tiny_stage1")
  expected = {"renderer/" + k[len("trainable/generator/"):]: v for k, v in stage1.items()
              if k.startswith("trainable/generator/")}
  expected.update({k[len("trainable/"):]: v for k, v in layout.items()
                   if k.startswith(("trainable/guider/", "trainable/denoiser/",
                                    "trainable/portrait/"))})
  expected.update({k[len("frozen/"):]: v for k, v in layout.items() if k.startswith("frozen/")})
  got = {k: x.sharding.spec for k, x in trees.flatten(sampler.params).items()}
  assert got == expected
