"""MEMO sampling through the generation layer on random (made lively) tiny weights:
clip-chained videos whose later clips read the earlier ones through the past frames and the
memory, the anchored and portrait-input paths, speech features equal to the training data's,
the emotion read from the audio or carried in a model file, and a given identity from an
ONNX face recogniser."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from memo_tiny import F, TINY, config, params, speech, task  # noqa: F401 (fixtures)

from talkjax import config as cfg
from talkjax.data.synthtalk import SynthTalkClips
from talkjax.errors import TalkjaxError
from talkjax.models.memo.generate import MemoGeneration, lively, to_pixels
from talkjax.pipelines.sampler import Sampler


@pytest.fixture(scope="module")
def sampler(config, params):
  hook = MemoGeneration(config)
  return Sampler(hook, lively({"memo": params["trainable"], "vae": params["frozen"]["vae"]},
                              scale=0.2))


def test_later_clips_read_the_earlier_ones_and_never_the_future(sampler):
  image = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
  n = 3 * F * 640
  a, b = speech(1, n), speech(1, n)
  b[: F * 640 - 640] = speech(2, F * 640 - 640)     # the first clip's speech differs ...
  out_a = sampler.generate(image, a[None], seed=7)["frames"]
  out_b = sampler.generate(image, b[None], seed=7)["frames"]
  assert out_a.shape == (1, 3 * F, 64, 64, 3) and out_a.dtype == np.uint8
  again = sampler.generate(image, a[None], seed=7)["frames"]
  np.testing.assert_array_equal(again, out_a)                     # seeded
  diff = np.abs(out_a.astype(int) - out_b).reshape(3, F, -1).mean(axis=(1, 2))
  # ... which changes clip 1, and clips 2 and 3 through the carried past and memory,
  # although their own speech (and the lookahead clip 1 reads of it) is the same
  assert diff[0] > 0.5 and diff[1] > 0.05 and diff[2] > 0.05, diff
  c = a.copy()
  c[2 * F * 640 + 3 * 640:] = 0.0                                 # only clip 3's later speech
  out_c = sampler.generate(image, c[None], seed=7)["frames"]
  np.testing.assert_array_equal(out_c[:, :2 * F], out_a[:, :2 * F])   # no clip sees ahead


def test_an_anchored_sampler_carries_the_portrait_then_each_clips_last_frame(config, sampler):
  """model.flow.anchor = "last_past": with the DiffusionNet's output layer at zero and a
  tiny residual std, every clip's frames are its anchor decoded, the portrait's latents on
  the first clip (the past is its copies), the previous clip's last frame read back by
  the VAE after that. The same net unanchored draws something else."""
  c = config.copy_and_resolve_references()
  c.model.flow.update(output="preconditioned", anchor="last_past", anchor_std=1e-3)
  params = jax.tree.map(lambda x: x, sampler.params)
  out = params["memo"]["diffusion_net"]["conv_out"]
  out.update({k: np.zeros_like(v) for k, v in out.items()})
  hook = MemoGeneration(c)
  image = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
  audio = speech(1, 2 * F * 640)[None]
  frames = Sampler(hook, params).generate(image, audio, seed=7)["frames"].astype(int)

  anchor = hook.encode(params, to_pixels(image))[:, None]          # (1, 1, h, w, C)
  want = []
  for _ in range(2):
    rgb = hook.decode(params, anchor)
    want.append(np.asarray(jnp.clip(jnp.round((rgb + 1) * 127.5), 0, 255)).astype(int))
    anchor = hook.encode(params, jnp.clip(rgb, -1.0, 1.0))
  for clip, expected in enumerate(want):
    got = frames[:, clip * F:(clip + 1) * F]
    gap = np.abs(got - expected)
    # the residual noise (std 1e-3 in latent units), through a random VAE, moves pixels by a
    # level or a few
    assert gap.mean() < 0.5 and gap.max() <= 8, (clip, gap.mean(), gap.max())   # 0.15 2, 0.27 4
  c.model.flow.anchor = "none"
  free = Sampler(MemoGeneration(c), params).generate(image, audio, seed=7)["frames"]
  assert np.abs(free[:, :F].astype(int) - want[0]).mean() > 5


def test_the_sampler_feeds_the_portrait_input_path(config, sampler):
  """model.portrait_input (on in the tiny configs): the sampler hands the DiffusionNet the
  portrait's latents; zero, the path leaves every frame as the model without it draws it."""
  assert config.model.portrait_input
  c = config.copy_and_resolve_references()
  c.model.portrait_input = False
  memo = sampler.params["memo"]
  image = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
  audio = speech(1, F * 640)[None]
  lively_path = sampler.generate(image, audio, seed=7)["frames"].astype(int)
  net = memo["diffusion_net"]
  zeroed = sampler.params | {"memo": memo | {"diffusion_net": net | {
      "portrait_in": jax.tree_util.tree_map(np.zeros_like, net["portrait_in"])}}}
  with_zero = Sampler(sampler.hook, zeroed).generate(image, audio, seed=7)["frames"]
  without = sampler.params | {"memo": memo | {"diffusion_net": {
      k: v for k, v in net.items() if k != "portrait_in"}}}
  plain = Sampler(MemoGeneration(c), without).generate(image, audio, seed=7)["frames"]
  np.testing.assert_array_equal(with_zero, plain)
  assert np.abs(lively_path - plain.astype(int)).mean() > 1.0


def test_the_vae_decodes_and_re_encodes_in_frame_chunks_as_at_once(sampler):
  hook, params = sampler.hook, sampler.params
  latents = np.random.default_rng(5).standard_normal((2, 5, 16, 16, 4)).astype(np.float32)
  decode, encode = (jax.jit(f, static_argnums=2) for f in (hook.decode, hook.encode))
  whole = decode(params, latents, None)
  pieces = decode(params, latents, 3)    # 10 frames by 3
  np.testing.assert_allclose(pieces, whole, rtol=1e-4, atol=1e-4)
  again = encode(params, np.clip(whole, -1, 1), 4)
  np.testing.assert_allclose(again, encode(params, np.clip(whole, -1, 1), None), rtol=1e-4,
                             atol=1e-4)


def test_sampling_speech_features_equal_the_training_datas(config):
  from talkjax.data.prepare import ensure_synthtalk
  hook = MemoGeneration(config)
  clips = SynthTalkClips(ensure_synthtalk(config.data), "train")
  audio = np.asarray(clips.record(0)["audio"], np.float32)
  frames = len(audio) // 640
  whole = hook.speech.features(audio, frames)           # what training examples hold
  m = hook.speech.margin
  start = 8                                             # a clip in the middle
  piece = audio[(start - m) * 640:(start + F + m) * 640]
  chunk = np.asarray(hook.speech.chunk(piece[None], F))[0]
  np.testing.assert_allclose(chunk, whole[start:start + F], atol=2e-3)


def test_unknown_emotion_and_a_given_identity_without_recogniser_are_refused(config, params,
                                                                           tmp_path):
  hook = MemoGeneration(config)
  assert int(hook.request_inputs(emotion="happy")["emotion"]) == 3
  assert int(hook.request_inputs(emotion="contempt")["emotion"]) == 5     # MEAD -> "other"
  with pytest.raises(TalkjaxError, match="unknown emotion"):
    hook.request_inputs(emotion="bored")
  given = cfg.load_config("memo/synthtalk_tiny_stage2", [f"data.path={tmp_path}", *TINY,
                                                         "model.identity.encoder=given"])
  from talkjax.pipelines.pipeline import Pipeline, Request
  hook = MemoGeneration(given)    # builds (benchmarks run on zeros) but samples no request
  with pytest.raises(TalkjaxError, match="names no recogniser"):
    Pipeline(Sampler(hook, _given_weights(params)), crop="none").prepare(
        Request(np.zeros((64, 64, 3), np.uint8), speech(0, 640 * F)))
  missing = cfg.load_config("memo/synthtalk_tiny_stage2", [
      f"data.path={tmp_path}", *TINY, f"model.emotion.classifier={tmp_path / 'none'}"])
  with pytest.raises(TalkjaxError, match="no trained audio emotion classifier"):
    MemoGeneration(missing)


@pytest.fixture(scope="module")
def emotion_dir(config, tmp_path_factory):
  """A tiny audio emotion classifier trained by the real trainer on the same SynthTalk."""
  from talkjax.cli import main
  workdir = tmp_path_factory.mktemp("emotion") / "run"
  code = main(["train", "--config", "memo/synthtalk_tiny_emotion", "--workdir", str(workdir),
               "--set", f"data.path={config.data.path}", "data.synthtalk.identities=3",
               "data.synthtalk.clips=4", "data.synthtalk.seconds=1.6",
               "model.emotion_audio.window_s=1.0", "data.offsets=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5)",
               "data.batch_size=8", "train.steps=20", "checkpoint.every=20"])
  assert code == 0
  return workdir


def test_emotion_classifier_reads_back_as_it_trained(emotion_dir, config):
  from talkjax.audio.emotion import EmotionReader, heard_frames
  from talkjax.data.prepare import ensure_synthtalk
  from talkjax.models.audio_emotion.tasks import AudioEmotionTask, EmotionWindows
  from talkjax import stages
  reader, weights = EmotionReader.from_workdir(emotion_dir)
  trained = stages.read_params(emotion_dir)
  task = AudioEmotionTask(trained.config)
  source = EmotionWindows(ensure_synthtalk(config.data), "train", window=16000, offsets=(0.5,))
  clips = SynthTalkClips(ensure_synthtalk(config.data), "train")
  rec = clips.record(1)
  window = np.asarray(rec["audio"], np.float32)[8000:24000]
  np.testing.assert_array_equal(source[1]["audio"], window)
  frames = np.asarray(rec["emotion"])[12:37]           # the window's frames at 25 fps
  assert int(source[1]["emotion"]) == int(np.bincount(source.to_memo[frames]).argmax())
  ce, _ = jax.jit(lambda p, b: task.loss(p, b, None))(
      {"trainable": {"classifier": trained.params["trainable"]["classifier"]}},
      {"audio": window[None], "emotion": np.zeros((1,), np.int32)})
  logits = jax.jit(reader.logits)(weights, window[None])
  np.testing.assert_allclose(ce[0], -jax.nn.log_softmax(logits[0])[0], rtol=1e-5)
  mask = np.asarray(jax.jit(heard_frames, static_argnums=1)(
      np.concatenate([np.zeros(320), np.ones(480)])[None], 160))
  np.testing.assert_array_equal(mask, [[0, 0, 1, 1, 1, 1]])     # padding is not speech


def test_sampling_reads_the_emotion_from_the_audio(config, params, emotion_dir):
  from talkjax.audio.emotion import EMOTIONS, EmotionReader
  from talkjax.models.memo.generate import READ_EMOTION
  hook = MemoGeneration(cfg.load_config(
      "memo/synthtalk_tiny_stage2", [f"data.path={config.data.path}", *TINY,
                                     f"model.emotion.classifier={emotion_dir}"]))
  reach = -(-(16000 - F * 640) // 2)               # the 1 s window centred on each clip
  assert hook.audio_context == hook.audio_lookahead == reach
  assert int(hook.request_inputs()["emotion"]) == READ_EMOTION
  weights = lively({"memo": params["trainable"], "vae": params["frozen"]["vae"]}, scale=0.2)
  weights["emotion"] = EmotionReader.from_workdir(emotion_dir)[1]
  sampler = Sampler(hook, weights)
  image = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
  audio = speech(3, F * 640)                       # one clip: one window, one label
  heard = int(jax.jit(hook.emotion_reader)(weights["emotion"],
                                            np.pad(audio, (reach, reach))[None])[0])
  read = sampler.generate(image, audio[None], seed=5)["frames"]
  given = sampler.generate(image, audio[None], seed=5,
                           inputs={"emotion": np.int32([heard])})["frames"]
  other = sampler.generate(image, audio[None], seed=5,
                           inputs={"emotion": np.int32([(heard + 1) % len(EMOTIONS)])})["frames"]
  np.testing.assert_array_equal(read, given)       # read = the classifier's answer, given
  assert np.abs(read.astype(int) - other).mean() > 0.05   # and the label matters


def test_a_model_file_carries_the_emotion_classifier(config, params, emotion_dir, tmp_path):
  """A MEMO model file holds the classifier (config and float32 weights): it reads the same
  labels and makes the same frames once the training folders are gone."""
  import shutil
  from talkjax import bundle
  from talkjax.audio.emotion import EmotionReader
  from talkjax.models import load_generator
  folder = shutil.copytree(emotion_dir, tmp_path / "classifier")
  hook = MemoGeneration(cfg.load_config(
      "memo/synthtalk_tiny_stage2", [f"data.path={config.data.path}", *TINY,
                                     f"model.emotion.classifier={folder}"]))
  weights = hook._with_classifier(
      lively({"memo": params["trainable"], "vae": params["frozen"]["vae"]}, scale=0.2))
  bundle.save(tmp_path / "memo.msgpack", hook, weights)
  shutil.rmtree(folder)
  loaded, loaded_weights = load_generator(tmp_path / "memo.msgpack")
  assert loaded.linked["emotion"].family == "audio_emotion"
  expected = EmotionReader.from_workdir(emotion_dir)[1]
  for got, want in zip(jax.tree.leaves(loaded_weights["emotion"]), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(got, want)                  # float32, not rounded
  rounded = jax.tree.map(lambda x: np.asarray(x, np.float16).astype(np.float32),
                         {k: v for k, v in weights.items() if k != "emotion"})
  image = np.random.default_rng(1).integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
  audio = speech(4, 2 * F * 640)[None]
  from_file = Sampler(loaded, loaded_weights).generate(image, audio, seed=2)["frames"]
  from_folders = Sampler(hook, {**rounded, "emotion": expected}).generate(image, audio, seed=2)
  np.testing.assert_array_equal(from_file, from_folders["frames"])


# ---- a given identity: the portrait's face embedding from an ONNX recogniser --------------

def _given_weights(params):
  """The module's weights without the learned identity encoder (same image_proj width)."""
  return {"memo": {k: v for k, v in params["trainable"].items() if k != "identity_encoder"},
          "vae": params["frozen"]["vae"]}


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory):
  """A small random-weight recogniser in insightface's ONNX format: 112x112 RGB -> 64 (the
  tiny model's identity width; the release's is 512)."""
  import torch
  torch.manual_seed(0)
  net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 4, stride=4), torch.nn.PReLU(8),
                            torch.nn.Conv2d(8, 8, 4, stride=4), torch.nn.Flatten(),
                            torch.nn.Linear(8 * 7 * 7, 64)).eval()
  path = tmp_path_factory.mktemp("face") / "recognizer.onnx"
  torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), opset_version=11,
                    input_names=["input.1"], output_names=["embedding"],
                    dynamic_axes={"input.1": {0: "batch"}}, dynamo=False)
  return path


def test_a_given_identity_is_the_portraits_face_embedding_or_zeros_with_a_warning(
    config, params, recognizer, tmp_path):
  import onnxruntime
  import skimage.data
  from PIL import Image

  from talkjax.data.faces import detect_faces
  from talkjax.eval.csim import arcface_chip
  from talkjax.models.memo.identity import NO_FACE
  from talkjax.pipelines.pipeline import Pipeline, Request
  given = cfg.load_config("memo/synthtalk_tiny_stage2", [
      f"data.path={tmp_path}", *TINY, "model.identity.encoder=given",
      f"model.identity.recognizer={recognizer}"])
  hook = MemoGeneration(given)
  weights = _given_weights(params)
  pipeline = Pipeline(Sampler(hook, weights), crop="none")
  face = np.asarray(Image.fromarray(skimage.data.astronaut()[:300, 80:380]).resize((64, 64)))
  flat = np.full((64, 64, 3), 128, np.uint8)
  audio = speech(0, 640 * F)
  with_face = pipeline.prepare(Request(face, audio))
  without = pipeline.prepare(Request(flat, audio))
  # the embedding is the recogniser's on the aligned chip of the largest face
  chip = arcface_chip(with_face.image, detect_faces(with_face.image)[0].landmarks)
  session = onnxruntime.InferenceSession(str(recognizer), providers=["CPUExecutionProvider"])
  x = ((chip.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
  want = session.run(None, {"input.1": x})[0][0]
  got = with_face.inputs["identity"]
  assert np.abs(got - want).max() / np.abs(want).max() < 1e-4
  assert NO_FACE not in with_face.warnings
  np.testing.assert_array_equal(without.inputs["identity"], np.zeros(64, np.float32))
  assert NO_FACE in without.warnings
  # ... and it is what the image tokens are made of
  batch = {"image": with_face.image[None], "emotion": np.zeros(1, np.int32),
           "identity": got[None]}
  context, _ = jax.jit(hook.start, static_argnums=2)(weights, batch, hook.knobs())
  tokens = hook.memo.image_tokens(weights["memo"], got[None])
  np.testing.assert_allclose(context["tokens"], tokens, rtol=1e-5, atol=1e-6)
  assert not np.allclose(context["tokens"], context["null_tokens"])
