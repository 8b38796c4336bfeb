"""The generation layer with a second family: the test-bed talker, which takes partner audio
and an emotion, trained by the real trainer and sampled through `talkjax sample`."""

import json

import numpy as np
import pytest
import soundfile
from PIL import Image

from talkjax.cli import main
from talkjax.errors import TalkjaxError
from talkjax.pipelines.pipeline import Pipeline, Request
from talkjax.pipelines.sampler import Sampler


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp("talker")
  code = main(["train", "--config", "testbed/talker", "--workdir", str(root / "run"), "--set",
               "train.steps=2", "checkpoint.every=2", "checkpoint.async_save=False"])
  assert code == 0
  return root / "run"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """Portraits and tracks of several lengths (1 to 3 chunks of 8 frames) on disk."""
  folder = tmp_path_factory.mktemp("inputs")
  rng = np.random.default_rng(0)
  for i in range(3):
    Image.fromarray(rng.integers(0, 255, (40 + 4 * i, 36, 3), np.uint8)).save(folder / f"face{i}.png")
  for name, seconds in (("me0", 0.3), ("me1", 0.5), ("me2", 0.9), ("you0", 0.4), ("you1", 1.2)):
    envelope = np.repeat(rng.uniform(0.01, 1.0, int(seconds * 100)), 160)
    track = rng.standard_normal(len(envelope)) * envelope * 0.3
    soundfile.write(folder / f"{name}.wav", track.astype(np.float32), 16000)
  return folder


def requests(folder):
  return [Request(str(folder / "face0.png"), str(folder / "me0.wav"), str(folder / "you0.wav"),
                  "happy", seed=1, name="a"),
          Request(str(folder / "face1.png"), str(folder / "me1.wav"), None, "sad", seed=2, name="b"),
          Request(str(folder / "face2.png"), str(folder / "me2.wav"), str(folder / "you1.wav"),
                  None, seed=3, knobs={"noise_scale": 1.5}, name="c"),
          Request(str(folder / "face0.png"), str(folder / "me2.wav"), str(folder / "you0.wav"),
                  "angry", seed=4, name="d")]


def test_batched_equals_one_by_one(workdir, inputs):
  batched = {r.name: r.frames for r in Pipeline.load(workdir, batch_size=4).run(requests(inputs), progress=False)}
  single = Pipeline.load(workdir, batch_size=1)
  assert sorted(batched) == ["a", "b", "c", "d"]
  for request in requests(inputs):
    one = single.run([request], progress=False).__next__().frames
    assert one.shape == batched[request.name].shape
    assert np.abs(one.astype(int) - batched[request.name].astype(int)).max() <= 1, request.name
  assert batched["a"].shape == (8, 32, 32, 3) and batched["c"].shape == (23, 32, 32, 3)


def test_every_request_input_reaches_the_family(workdir, inputs):
  pipe = Pipeline.load(workdir, batch_size=1)
  face, me, you = (str(inputs / n) for n in ("face0.png", "me2.wav", "you1.wav"))
  base = pipe(face, me, partner_audio=you, emotion="happy", seed=5).frames
  differs = lambda other: np.abs(other.astype(int) - base.astype(int)).mean() > 0.5
  assert not differs(pipe(face, me, partner_audio=you, emotion="happy", seed=5).frames)
  assert differs(pipe(face, me, partner_audio=you, emotion="sad", seed=5).frames)
  assert differs(pipe(face, me, partner_audio=str(inputs / "you0.wav"), emotion="happy", seed=5).frames)
  assert differs(pipe(face, me, emotion="happy", seed=5).frames)            # no partner: silence
  assert differs(pipe(face, me, partner_audio=you, emotion="happy", seed=6).frames)
  assert differs(pipe(face, me, partner_audio=you, emotion="happy", seed=5, noise_scale=2.0).frames)
  with pytest.raises(TalkjaxError, match="unknown emotion 'furious'"):
    pipe(face, me, emotion="furious")
  with pytest.raises(TalkjaxError, match="noise_scale=.abc. is not a number"):
    pipe(face, me, noise_scale="abc")


def test_sample_command_one_request_and_a_manifest(workdir, inputs, tmp_path, capsys):
  from talkjax.data.video_io import read_mp4
  code = main(["sample", "--checkpoint", str(workdir), "--image", str(inputs / "face1.png"),
               "--audio", str(inputs / "me1.wav"), "--partner-audio", str(inputs / "you1.wav"),
               "--emotion", "angry", "--out", str(tmp_path / "one.mp4")])
  assert code == 0
  frames, fps, _ = read_mp4(tmp_path / "one.mp4")
  assert frames.shape == (13, 32, 32, 3) and fps == 25
  lines = [{"image": "face0.png", "audio": "me0.wav", "partner_audio": "you0.wav",
            "emotion": "happy", "name": "m0"},
           {"image": "face1.png", "audio": "me2.wav", "emotion": "sad", "seed": 3, "name": "m1",
            "options": {"noise_scale": 0.1}},
           {"image": "face2.png", "audio": "me1.wav", "partner_audio": "you1.wav", "name": "m2"},
           {"image": "face2.png", "audio": "me1.wav", "emotion": "furious", "name": "bad"}]
  (inputs / "talker.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
  code = main(["sample", "--checkpoint", str(workdir), "--manifest", str(inputs / "talker.jsonl"),
               "--out", str(tmp_path / "many"), "--mesh", "data=2", "fsdp=4"])
  err = capsys.readouterr().err
  assert code == 1 and "3 written, 1 failed" in err and "FAILED bad: unknown emotion" in err
  assert sorted(p.name for p in (tmp_path / "many").glob("*.mp4")) == ["m0.mp4", "m1.mp4", "m2.mp4"]


def test_streaming_two_tracks_gives_the_offline_frames(workdir, inputs):
  sampler = Sampler.load(workdir)
  me, _ = soundfile.read(inputs / "me2.wav", dtype="float32")
  you, _ = soundfile.read(inputs / "you1.wav", dtype="float32")
  you = you[:len(me)]
  image = np.asarray(Image.open(inputs / "face2.png").convert("RGB"))[2:38]
  emotion = sampler.hook.request_inputs(emotion="sad")
  offline = sampler.generate(np.asarray(Image.fromarray(image).resize((32, 32), Image.LANCZOS))[None],
                             me[None], partner_audio=you[None], inputs={k: v[None] for k, v in emotion.items()},
                             seed=9)["frames"][0]
  stream = sampler.stream(image, seed=9, inputs=emotion)
  pieces = [stream.push(me[:3000]), stream.push(partner_audio=you[:7000]),  # partner ahead
            stream.push(me[3000:], partner_audio=you[7000:]), stream.finish()]
  assert len(pieces[0]) == 0 and len(pieces[1]) == 0    # a chunk needs both tracks
  streamed = np.concatenate(pieces)
  assert streamed.shape == offline.shape
  assert np.abs(streamed.astype(int) - offline.astype(int)).max() <= 1


def test_streams_share_their_programs_and_bench_times_streaming(workdir, tmp_path):
  sampler = Sampler.load(workdir)
  image = np.zeros((32, 32, 3), np.uint8)
  rng = np.random.default_rng(0)
  me, you = (rng.standard_normal(8000).astype(np.float32) * 0.1 for _ in range(2))

  def streamed():
    stream = sampler.stream(image, seed=1)
    return np.concatenate([stream.push(me, partner_audio=you), stream.finish()])

  first = streamed()
  programs = sampler._stream_programs
  compiled = [p._cache_size() for p in programs]
  np.testing.assert_array_equal(streamed(), first)
  assert sampler._stream_programs is programs and [p._cache_size() for p in programs] == compiled
  code = main(["bench", "sample", "--config", "testbed/talker", "--batches", "1", "--seconds",
               "0.5", "--repeats", "1", "--stream", "--json", str(tmp_path / "s.json")])
  assert code == 0
  rows = json.loads((tmp_path / "s.json").read_text())["results"]
  stream = next(r for r in rows if r.get("mode") == "stream")
  assert (stream["frames"], stream["chunk_frames"], stream["chunk_duration_ms"]) == (13, 8, 320)
  assert stream["fps"] > 0 and stream["chunk_ms"] > 0 and stream["first_call_s"] > 0


def test_model_file_and_bench_need_no_family_code(workdir, inputs, tmp_path, capsys, monkeypatch):
  from talkjax.commands import demo
  from talkjax import models
  assert main(["convert", "bundle", "--src", str(workdir), "--out", str(tmp_path / "t.msgpack")]) == 0
  request = requests(inputs)[2]
  a = Pipeline.load(workdir).run([request], progress=False).__next__().frames
  b = Pipeline.load(tmp_path / "t.msgpack").run([request], progress=False).__next__().frames
  assert np.abs(a.astype(int) - b.astype(int)).max() <= 2      # float16 storage
  code = main(["bench", "sample", "--config", "testbed/talker", "--batches", "1", "3",
               "--seconds", "0.5", "--repeats", "1", "--mesh", "data=1", "fsdp=8",
               "--json", str(tmp_path / "b.json")])
  assert code == 0
  result = json.loads((tmp_path / "b.json").read_text())
  assert result["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
  assert [r["frames"] for r in result["results"]] == [13, 39] and result["results"][0]["fps"] > 0
  # `demo --train` follows the registry's recipe, whatever family it names.
  monkeypatch.setitem(models.DEMOS, "ifmdm", {"stages": (("only", "testbed/talker", {}),)})
  model = demo.train_demo_model(tmp_path / "demo")
  assert Sampler.load(model).hook.config.family == "testbed_talker"
