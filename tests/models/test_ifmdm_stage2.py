"""IF-MDM stage 2 and generation, on a real (tiny) stage-1 checkpoint written by the trainer."""

import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from talkjax import config as cfg
from talkjax import stages
from talkjax.cli import main
from talkjax.errors import TalkjaxError
from talkjax.models import load_generator, make_task
from talkjax.models.ifmdm.builders import generator_params, load_stage1
from talkjax.models.ifmdm.generate import IFMDMGeneration, IFMDMKnobs
from talkjax.pipelines.sampler import Sampler
from talkjax.train.loop import train

TINY_STAGE1 = ["data.synthtalk.identities=4", "data.synthtalk.clips=8", "data.synthtalk.seconds=2",
               "model.channels=(8, 8, 16, 16)", "model.disc_channels=(8, 8, 8, 8)",
               "model.latent=24", "loss.perceptual=0.0", "train.steps=1", "data.batch_size=4",
               "checkpoint.every=1", "checkpoint.async_save=False"]
TINY_STAGE2 = ["model.window=16", "model.hidden=32", "model.layers=2", "model.heads=2",
               "model.audio.n_mels=8", "data.batch_size=4", "data.synthtalk.identities=4",
               "data.synthtalk.clips=8", "data.synthtalk.seconds=2", "sample.steps=2",
               "sample.lookahead=0"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
  root = tmp_path_factory.mktemp("ifmdm")
  data = root / "synthtalk"
  config = cfg.load_config("ifmdm/synthtalk_tiny_stage1", [f"data.path={data}", *TINY_STAGE1])
  train(config, make_task(config), root / "stage1", progress=False, devices=jax.devices()[:1])
  return root


def stage2_config(root, *extra):
  return cfg.load_config("ifmdm/synthtalk_tiny_stage2", [
      f"data.path={root / 'synthtalk'}", f"stage1.workdir={root / 'stage1'}", *TINY_STAGE2, *extra])


def lively(params, seed=0):
  """Random non-zero output layers (adaLN-Zero starts at exactly zero output), the same in
  every process (a layer's bump is keyed by a checksum of its name, not the salted hash())."""
  key = jax.random.PRNGKey(seed)
  def bump(path, x):
    name = "/".join(str(getattr(p, "key", p)) for p in path)
    if "modulation" in name or "final" in name:
      bump_key = jax.random.fold_in(key, zlib.crc32(name.encode()))
      return x + 0.05 * jax.random.normal(bump_key, x.shape)
    return x
  return jax.jit(lambda p: jax.tree_util.tree_map_with_path(bump, p))(params)


@pytest.fixture(scope="module")
def generator(stage1):
  """A sampler over the trained stage 1 and a random (made lively) stage-2 DiT."""
  config = stage2_config(stage1)
  task = make_task(config)
  params = nn.meta.unbox(jax.jit(task.init)(jax.random.PRNGKey(0), task.example_batch(1)))
  trained_stage1 = load_stage1(config)
  hook = IFMDMGeneration(config, trained_stage1.config)
  return Sampler(hook, {"renderer": generator_params(trained_stage1),
                        "dit": lively(params["trainable"]["dit"]),
                        "motion_stats": task.initial_values()["frozen"]["motion_stats"]})


def test_motion_windows_and_stats_come_from_the_stage1_encoder(stage1):
  config = stage2_config(stage1)
  task = make_task(config)
  source = task.data_source("train")
  ex = source[3]
  # The window's raw audio with 0.2 s of context in front: features are made in the step.
  assert ex["motion"].shape == (16, 20) and ex["audio"].shape == (5 * 640 + 16 * 640,)
  np.testing.assert_allclose(ex["mean"], ex["motion"].mean(0), atol=1e-6)
  assert np.all(np.abs(ex["motion"]) < 1)       # tanh codes
  stats = task.initial_values()["frozen"]["motion_stats"]
  assert {k: v.shape for k, v in stats.items()} == {"mean": (20,), "std": (20,), "window_std": (20,)}
  assert stats["std"].min() > 0 and stats["window_std"].min() > 0
  all_motion = np.concatenate([source[i]["motion"] for i in range(0, len(source), 16)])
  np.testing.assert_allclose(stats["mean"], all_motion.mean(0), atol=0.05)
  assert "stats" not in config.model            # nothing is written into the config
  cache = list((stage1 / "stage1" / "motion_codes").rglob("train_audio16k.npz"))
  assert len(cache) == 1


def test_statistics_travel_with_the_checkpoint_into_sampling(stage1, tmp_path):
  config = stage2_config(stage1, "train.steps=1", "checkpoint.every=1", "checkpoint.async_save=False")
  task = make_task(config)
  train(config, task, tmp_path / "stage2", progress=False, devices=jax.devices()[:1])
  saved = stages.read_params(tmp_path / "stage2").params["frozen"]["motion_stats"]
  expected = task.initial_values()["frozen"]["motion_stats"]
  for k in expected:
    np.testing.assert_array_equal(saved[k], expected[k])
  hook, params = load_generator(tmp_path / "stage2")
  np.testing.assert_array_equal(params["motion_stats"]["window_std"], expected["window_std"])
  assert hook.resolution == 64 and hook.linked["stage1"].family == "ifmdm_stage1"
  # A model file of the run samples the same frames as the folder.
  assert main(["convert", "bundle", "--src", str(tmp_path / "stage2"),
               "--out", str(tmp_path / "m.msgpack")]) == 0
  image = np.full((1, 64, 64, 3), 128, np.uint8)
  audio = np.random.default_rng(0).standard_normal((1, 20 * 640)).astype(np.float32) * 0.1
  a = Sampler(hook, params).generate(image, audio, seed=3)["frames"]
  b = Sampler.load(tmp_path / "m.msgpack").generate(image, audio, seed=3)["frames"]
  assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # float16 storage


def test_a_model_file_serves_as_stage1_for_a_new_stage2(stage1, tmp_path, monkeypatch):
  """stage1.workdir may name a model file: its renderer is the stage-1 generator (float16
  as stored), and the motion codes read with it are cached under ~/.cache, by content."""
  from talkjax import bundle
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  config = stage2_config(stage1)
  folder = load_stage1(config)
  # A file with the renderer alone: all that serving as stage 1 reads.
  bundle.save(tmp_path / "m.msgpack", IFMDMGeneration(config, folder.config),
              {"renderer": generator_params(folder)})
  on_file = stage2_config(stage1, f"stage1.workdir={tmp_path / 'm.msgpack'}")
  stage = load_stage1(on_file)
  assert stage.config.family == "ifmdm_stage1" and stage.workdir == tmp_path / "m.msgpack"
  assert stage.cache_dir.parent == tmp_path / "home" / ".cache" / "talkjax" / "stages"
  for got, want in zip(jax.tree.leaves(generator_params(stage)),
                       jax.tree.leaves(generator_params(folder))):
    np.testing.assert_allclose(got, want.astype(np.float16).astype(np.float32), rtol=0, atol=0)
  a, b = make_task(on_file).data_source("train"), make_task(config).data_source("train")
  np.testing.assert_allclose(a[3]["motion"], b[3]["motion"], atol=2e-2)
  assert list(stage.cache_dir.rglob("train_audio16k.npz"))
  with pytest.raises(TalkjaxError, match="carries no 'infp_stage1' stage1"):
    stages.load_stage(on_file, "stage1", "infp_stage1", from_model_file=stages.renderer_as_generator)


def test_the_level_tells_the_dit_how_loud_a_frame_is(stage1):
  """Per-frame LayerNorm makes the DiT deaf to a gain; `model.audio.level` hears it."""
  rng = np.random.default_rng(4)
  audio = jnp.asarray(rng.standard_normal((1, 16 * 640 + 5 * 640)) * 0.05, jnp.float32)
  for on in (False, True):
    task = make_task(stage2_config(stage1, f"model.audio.level={on}"))
    batch = {k: jnp.asarray(rng.standard_normal(v.shape), jnp.float32)
             for k, v in task.example_batch(1).items()}
    params = nn.meta.unbox(jax.jit(task.init)(jax.random.PRNGKey(0), batch))
    params = lively(params["trainable"]["dit"])
    run = jax.jit(lambda a: task.model.apply({"params": params}, batch["motion"], jnp.array([300]),
                                             task.speech_features({}, a), batch["hint"],
                                             batch["mean"], batch["std"], jnp.zeros((1, 4), bool)))
    change = float(jnp.abs(run(4 * audio) - run(audio)).mean())
    assert (change > 1e-2) if on else (change < 1e-4), (on, change)
  with pytest.raises(TalkjaxError, match="model.audio.level=False"):
    make_task(stage2_config(stage1, "model.audio.level=True", "model.audio.kind=wav2vec2"))


def test_dit_starts_at_zero_output_and_keeps_shapes(stage1):
  task = make_task(stage2_config(stage1))
  batch = {k: jnp.asarray(np.random.default_rng(0).standard_normal(v.shape), jnp.float32)
           for k, v in task.example_batch(2).items()}
  params = nn.meta.unbox(jax.jit(task.init)(jax.random.PRNGKey(0), batch))["trainable"]["dit"]
  feats = jax.jit(task.speech_features)({}, batch["audio"])
  assert feats.shape == (2, 16, 16)
  out = jax.jit(lambda p, *a: task.model.apply({"params": p}, *a))(
      params, batch["motion"], jnp.array([5, 900]), feats, batch["hint"], batch["mean"],
      batch["std"], jnp.zeros((2, 4), bool))
  assert out.shape == (2, 16, 20)
  np.testing.assert_array_equal(out, 0.0)  # adaLN-Zero: zero-initialised modulation and output


def test_a_few_training_steps_reduce_the_loss(stage1):
  config = stage2_config(stage1)
  task = make_task(config)
  source = task.data_source("train")
  batch = {k: jnp.stack([jnp.asarray(source[i][k]) for i in range(8)]) for k in source[0]}
  params = nn.meta.unbox(jax.jit(task.init)(jax.random.PRNGKey(0), batch))["trainable"]
  frozen = task.initial_values()["frozen"]
  tx = optax.adam(3e-3)
  opt = tx.init(params)
  rng = jax.random.PRNGKey(1)  # the same noise and timesteps every step: a fixed objective
  full = lambda p: {"trainable": p, "frozen": frozen}

  @jax.jit
  def step(params, opt):
    loss, grads = jax.value_and_grad(lambda p: task.loss(full(p), batch, rng)[0].mean())(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), opt, loss

  losses = []
  for _ in range(30):
    params, opt, loss = step(params, opt)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0], losses


def test_classifier_free_guidance_extrapolates_from_the_audio_free_prediction(generator):
  g, params = generator.hook, generator.params
  stats = params["motion_stats"]
  rng = np.random.default_rng(0)
  feats = jnp.asarray(rng.standard_normal((2, 16, 16)), jnp.float32)
  hint = jnp.asarray(rng.uniform(-0.5, 0.5, (2, 20)), jnp.float32)
  std = jnp.broadcast_to(stats["window_std"], (2, 20))
  noise = jnp.asarray(rng.standard_normal((2, 16, 20)), jnp.float32)
  # One DDIM step from t = T-1 lands on the predicted x0 (x0-prediction).
  sample = jax.jit(g.sample_motion, static_argnums=6)
  one = lambda scale: sample(params, feats, hint, hint, std, noise,
                             IFMDMKnobs(steps=1, guidance=scale))
  z = lambda x: (x - stats["mean"]) / stats["std"]
  t = jnp.full((2,), g.config.diffusion.steps - 1)
  pred = jax.jit(lambda drop_audio: g.dit.apply(
      {"params": params["dit"]}, noise, t, feats, z(hint), z(hint), std / stats["std"],
      jnp.zeros((2, 4), bool).at[:, 0].set(drop_audio)))
  cond, uncond = pred(False), pred(True)
  assert float(jnp.abs(cond - uncond).max()) > 1e-3  # audio matters to the model
  for scale in (1.0, 3.0):
    expected = (uncond + scale * (cond - uncond)) * stats["std"] + stats["mean"]
    np.testing.assert_allclose(one(scale), expected, atol=1e-5)


def test_streaming_gives_the_offline_frames_and_chunks_chain(generator, stage1):
  from talkjax_datasets.synthtalk.clip import make_clip
  from talkjax_datasets.synthtalk.spec import BuildSpec
  clip = make_clip(BuildSpec(identities=2, clips=2, seconds=1.5, resolution=64, seed=5), 0)
  audio = clip["audio"][:-100]  # not a whole number of frames: the last one is padded
  out = generator.generate(clip["frames"][:1], audio[None], seed=7)
  motion, frames = out["motion"], out["frames"]
  assert frames.shape == (1, 38, 64, 64, 3) and frames.dtype == np.uint8
  stream = generator.stream(clip["frames"][0], seed=7)
  pieces = [stream.push(audio[i:i + 5000]) for i in range(0, len(audio), 5000)]
  assert sum(len(p) for p in pieces) == 32  # two whole 16-frame chunks before the audio ends
  streamed = np.concatenate(pieces + [stream.finish()])
  assert np.abs(streamed.astype(int) - frames[0].astype(int)).max() <= 1
  # Chaining: chunk 2 is chunk 1's continuation, its hint being chunk 1's last motion.
  hook, params = generator.hook, generator.params
  ctx = hook.audio_context
  padded = np.pad(audio, (ctx, 48 * 640 - len(audio)))[None]
  second = _second_chunk(hook, params, clip["frames"][:1], motion[:, 15],
                         padded[:, 16 * 640:16 * 640 + ctx + 16 * 640])
  np.testing.assert_allclose(second["motion"], motion[:, 16:32], atol=1e-4)


def _second_chunk(hook, params, image, hint, audio):
  """The second chunk of a video of `image`, hinted by `hint` and seeded as sampling seeds
  it, jitted as sampling runs it (run op by op, each op of each new shape compiles alone)."""
  def run(params, image, hint, audio):
    appearance, _ = hook.start(params, {"image": image}, hook.knobs())
    keys = jax.random.fold_in(jax.random.PRNGKey(7), 1)[None]
    return hook.chunk(params, appearance, (hint, appearance[2]), {"audio": audio}, keys,
                      hook.knobs(), {"std_scale": jnp.ones(1), "std_value": jnp.ones(1)})[1]
  return jax.jit(run)(params, image, jnp.asarray(hint), jnp.asarray(audio))


def test_lookahead_chunks_keep_the_dits_first_frames_and_see_the_speech_after(generator, stage1):
  from talkjax_datasets.synthtalk.clip import make_clip
  from talkjax_datasets.synthtalk.spec import BuildSpec
  config = stage2_config(stage1, "sample.lookahead=4")
  hook = IFMDMGeneration(config, generator.hook.linked["stage1"])
  assert (hook.window, hook.audio_lookahead) == (12, 4 * 640)   # the DiT still samples 16
  sampler, params = Sampler(hook, generator.params), generator.params
  clip = make_clip(BuildSpec(identities=2, clips=2, seconds=1.5, resolution=64, seed=5), 0)
  audio = clip["audio"][:-100]                                   # 38 frames: 4 chunks of 12
  run = lambda a: sampler.generate(clip["frames"][:1], a[None], seed=7)
  out = run(audio)
  motion, frames = out["motion"], out["frames"]
  assert frames.shape == (1, 38, 64, 64, 3) and motion.shape == (1, 38, 20)
  # Chunk 2 = the DiT's first 12 frames over the speech of frames 12..27, hinted by frame 11.
  ctx = hook.audio_context
  padded = np.pad(audio, (ctx, 64 * 640 - len(audio)))[None]
  second = _second_chunk(hook, params, clip["frames"][:1], motion[:, 11],
                         padded[:, 12 * 640:24 * 640 + ctx + 4 * 640])
  np.testing.assert_allclose(second["motion"], motion[:, 12:24], atol=1e-4)
  # The 4 frames of speech after a chunk shape its kept frames; speech further on does not.
  silenced = lambda a, b: np.concatenate([audio[:a * 640], np.zeros((b - a) * 640, np.float32),
                                          audio[b * 640:]])
  assert np.abs(run(silenced(12, 16))["motion"][:, :12] - motion[:, :12]).max() > 1e-3
  later = run(silenced(16, 20))["motion"]
  np.testing.assert_array_equal(later[:, :12], motion[:, :12])
  assert np.abs(later[:, 12:24] - motion[:, 12:24]).max() > 1e-3
  # A stream waits for the lookahead, then gives the offline frames.
  stream = sampler.stream(clip["frames"][0], seed=7)
  assert len(stream.push(audio[:12 * 640])) == 0                 # chunk 1's own samples only
  pieces = [stream.push(audio[12 * 640:16 * 640]), stream.push(audio[16 * 640:]), stream.finish()]
  assert [len(p) for p in pieces] == [12, 12, 14]
  assert np.abs(np.concatenate(pieces).astype(int) - frames[0].astype(int)).max() <= 1
  with pytest.raises(TalkjaxError, match="sample.lookahead=16 must be in 0..15"):
    IFMDMGeneration(stage2_config(stage1, "sample.lookahead=16"), generator.hook.linked["stage1"])


def test_too_short_audio_and_missing_stage1_are_clear_errors(generator, tmp_path, capsys):
  with pytest.raises(TalkjaxError, match="shorter than one frame"):
    generator.generate(np.zeros((1, 64, 64, 3), np.uint8), np.zeros((1, 100), np.float32))
  code = main(["train", "--config", "ifmdm/synthtalk_tiny_stage2", "--workdir", str(tmp_path / "s2"),
               "--set", f"stage1.workdir={tmp_path / 'nothing'}", f"data.path={tmp_path / 'd'}",
               "data.synthtalk.clips=4", "data.synthtalk.identities=4", "data.synthtalk.seconds=2",
               "model.window=16"])
  assert code == 2
  err = capsys.readouterr().err
  assert "stage1" in err and "talkjax train --config ifmdm/synthtalk_tiny_stage1" in err


class _FeatureRecorder(IFMDMGeneration):
  """The hook, also returning the speech features each chunk fed the DiT."""

  def chunk(self, params, context, carry, tracks, keys, knobs, runtime):
    carry, out = super().chunk(params, context, carry, tracks, keys, knobs, runtime)
    ctx = self.audio_context
    out["features"] = self.speech.chunk(tracks["audio"][:, ctx:], tracks["audio"][:, :ctx],
                                        params.get("speech"))
    return carry, out


def test_training_windows_see_the_speech_features_sampling_computes(generator, stage1):
  """Training features = sampling features: a training window that starts where a sampling
  chunk starts gets the same numbers (same audio slice, same function), for the first chunk
  (silence before the clip) and a later one."""
  config = stage2_config(stage1)
  task = make_task(config)
  source = task.data_source("train")
  codes = task.codes("train")
  first = int(codes["offsets"][1])                       # the second clip of the split
  n = int(codes["offsets"][2]) - first
  audio = codes["audio"][first * 640:(first + n) * 640]
  hook = _FeatureRecorder(config, generator.hook.linked["stage1"])
  sampler = Sampler(hook, jax.device_get(generator.params))
  sampled = sampler.generate(np.zeros((1, 64, 64, 3), np.uint8), audio[None], seed=0,
                             knobs=sampler.knobs(steps=1))["features"][0]
  w = config.model.window
  for k in range(n // w):
    index = int(np.flatnonzero(source.starts == first + k * w)[0])
    window = source[index]["audio"][None]
    trained = np.asarray(task.speech_features({}, jnp.asarray(window)))[0]
    np.testing.assert_allclose(trained, sampled[k * w:(k + 1) * w], rtol=1e-5, atol=1e-5)


def test_mean_and_std_controls_drop_or_set_their_tokens(generator):
  g, params = generator.hook, generator.params
  rng = np.random.default_rng(1)
  feats = jnp.asarray(rng.standard_normal((1, 16, 16)), jnp.float32)
  hint = jnp.asarray(rng.uniform(-0.5, 0.5, (1, 20)), jnp.float32)
  other = jnp.asarray(rng.uniform(-0.5, 0.5, (1, 20)), jnp.float32)
  std = jnp.full((1, 20), 0.3)
  noise = jnp.asarray(rng.standard_normal((1, 16, 20)), jnp.float32)
  sample = jax.jit(g.sample_motion, static_argnums=6)
  run = lambda m, s, **kw: np.asarray(sample(params, feats, hint, m, s, noise,
                                             IFMDMKnobs(steps=2, **kw)))
  # Dropped tokens: their values no longer matter.
  np.testing.assert_array_equal(run(hint, std, mean="none"), run(other, std, mean="none"))
  np.testing.assert_array_equal(run(hint, std, std="none"), run(hint, 2 * std, std="none"))
  # Kept tokens: their values do (the random DiT's std token acts weakly, but it acts).
  assert np.abs(run(hint, std) - run(other, std)).max() > 1e-4
  assert not np.array_equal(run(hint, std), run(hint, 10 * std))
  # "absolute" gives every dimension std_value; "scale" std_scale x the window std.
  knobs = g.knobs(std="absolute", std_value=0.3)
  chunk = jax.jit(lambda params, runtime: g.chunk(
      params, g.start(params, {"image": jnp.zeros((1, 64, 64, 3), jnp.uint8)}, knobs)[0],
      (hint, hint), {"audio": jnp.zeros((1, g.audio_context + 16 * 640))},
      jax.random.PRNGKey(0)[None], knobs, runtime)[1]["motion"])
  a = chunk(params, {"std_scale": jnp.ones(1), "std_value": jnp.full(1, 0.3)})
  b = jax.jit(lambda params: g.sample_motion(
      params, g.speech.chunk(jnp.zeros((1, 16 * 640)), jnp.zeros((1, g.audio_context)), None),
      hint, hint, std, jax.random.normal(jax.random.PRNGKey(0), (1, 16, 20)), knobs))(params)
  np.testing.assert_allclose(a, b, atol=1e-5)
  with pytest.raises(TalkjaxError, match="std mode"):
    g.knobs(std="loud")


def test_the_papers_recipe_learns_a_variance_that_sampling_ignores(stage1):
  from talkjax_experiments.ifmdm import hdtf_512_stage2
  paper = hdtf_512_stage2.get_config()
  assert (paper.diffusion.prediction, paper.diffusion.schedule, paper.diffusion.learn_sigma,
          paper.optimizer.weight_decay) == ("eps", "linear", True, 0.0)
  assert (paper.sample.mean, paper.sample.std) == ("none", "none")
  config = stage2_config(stage1, "diffusion.learn_sigma=True", "diffusion.prediction=eps",
                         "diffusion.schedule=linear", "loss.velocity=0.0")
  task = make_task(config)
  source = task.data_source("train")
  batch = {k: jnp.stack([jnp.asarray(source[i][k]) for i in range(4)]) for k in source[0]}
  params = nn.meta.unbox(jax.jit(task.init)(jax.random.PRNGKey(0), batch))
  params["frozen"] = task.initial_values()["frozen"]
  params["trainable"] = lively(params["trainable"])
  loss, metrics = jax.jit(task.loss)(params, batch, jax.random.PRNGKey(0))
  assert loss.shape == (4,) and np.isfinite(np.asarray(loss)).all()
  assert float(metrics["vlb"]) > 0 and float(metrics["mse"]) > 0
  hook = IFMDMGeneration(config, load_stage1(config).config)
  assert hook.dit.learn_sigma
  knobs = hook.knobs(steps=2)
  motion = jax.jit(lambda params, batch: hook.sample_motion(
      {"dit": params["trainable"]["dit"], "motion_stats": params["frozen"]["motion_stats"]},
      task.speech_features({}, batch["audio"]), batch["hint"], batch["mean"], batch["std"],
      jnp.zeros((4, 16, 20)), knobs))(params, batch)
  assert motion.shape == (4, 16, 20)


def test_a_velocity_term_with_eps_prediction_is_refused(tmp_path):
  config = cfg.load_config("ifmdm/synthtalk_tiny_stage2", [
      f"data.path={tmp_path}", "diffusion.prediction=eps", "loss.velocity=1.0"])
  with pytest.raises(TalkjaxError, match="needs an x0 or v prediction"):
    make_task(config)


def test_chunked_wav2vec2_features_run_in_the_step_with_frozen_converted_weights(stage1, tmp_path):
  """With wav2vec2 the training step runs the converted encoder (frozen parameters loaded
  from the folder) on each window's audio, as sampling does per chunk."""
  import torch
  from transformers import Wav2Vec2Config as HFConfig
  from transformers import Wav2Vec2Model as HFModel
  torch.manual_seed(0)
  hf = HFModel(HFConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 3),
                        conv_stride=(5, 2), num_conv_pos_embeddings=16,
                        num_conv_pos_embedding_groups=4)).eval()
  hf.save_pretrained(tmp_path / "hf")
  assert main(["convert", "wav2vec2", "--src", str(tmp_path / "hf"), "--out", str(tmp_path / "w2v")]) == 0
  config = stage2_config(stage1, "model.audio.kind=wav2vec2", f"model.audio.wav2vec2={tmp_path / 'w2v'}",
                         "model.audio.hidden_size=16")
  task = make_task(config)
  source = task.data_source("train")
  batch = {k: jnp.stack([jnp.asarray(source[i][k]) for i in range(2)]) for k in source[0]}
  params = nn.meta.unbox(jax.eval_shape(task.init, jax.random.PRNGKey(0), batch))
  frozen = task.initial_values()["frozen"]
  assert jax.tree.map(jnp.shape, frozen["speech"]) == jax.tree.map(jnp.shape, params["frozen"]["speech"])
  feats = jax.jit(task.speech_features)(frozen, batch["audio"])
  ctx = task.speech.context
  expected = jax.jit(task.speech.chunk)(batch["audio"][:, ctx:], batch["audio"][:, :ctx],
                                        task.speech.load())
  assert feats.shape == (2, 16, 32)
  np.testing.assert_array_equal(feats, expected)
  trainable = nn.meta.unbox(jax.jit(task.init)(jax.random.PRNGKey(0), batch))["trainable"]
  loss, _ = jax.jit(task.loss)({"trainable": trainable, "frozen": frozen}, batch,
                                jax.random.PRNGKey(1))
  assert np.isfinite(np.asarray(loss)).all()
