"""The sampling pipeline and `talkjax sample` / `talkjax demo`, on the shipped IF-MDM model."""

import json

import numpy as np
import pytest
import soundfile
from PIL import Image

from talkjax.cli import main
from talkjax.commands.demo import shipped_model
from talkjax.errors import TalkjaxError
from talkjax.pipelines.pipeline import Failure, Pipeline, Request
from talkjax_datasets.synthtalk.clip import make_clip
from talkjax_datasets.synthtalk.spec import BuildSpec


@pytest.fixture(scope="module")
def pipe():
  return Pipeline.load(shipped_model(), batch_size=4, crop="center")


def person(seconds, seed):
  clip = make_clip(BuildSpec(identities=2, clips=2, seconds=seconds, resolution=64, seed=seed), 0)
  return clip["frames"][0], clip["audio"]


def write_inputs(folder, name, seconds, seed):
  image, audio = person(seconds, seed)
  Image.fromarray(image).resize((150, 120)).save(folder / f"{name}.png")  # not square: cropped
  soundfile.write(folder / f"{name}.wav", audio, 16000)
  return folder / f"{name}.png", folder / f"{name}.wav"


def test_a_manifest_gives_the_frames_of_one_by_one_sampling(pipe, tmp_path):
  # Lengths spanning 1 and 2 chunks of 32 frames, two requests per bucket, all different.
  specs = [("a", 0.9, 1), ("c", 1.7, 3), ("d", 1.1, 4), ("e", 2.2, 5)]
  requests = []
  for name, seconds, seed in specs:
    image, audio = write_inputs(tmp_path, name, seconds, seed)
    requests.append(Request(str(image), str(audio), seed=seed, name=name))
  batched = {r.name: r for r in pipe.run(requests, progress=False)}
  failed = {name: r.error for name, r in batched.items() if isinstance(r, Failure)}
  assert not failed, failed    # the reason, where a bare Failure would hide it
  for name, seconds, seed in specs:
    single = pipe(str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}.wav"), seed=seed)
    samples = soundfile.info(str(tmp_path / f"{name}.wav")).frames
    assert len(single.frames) == -(-samples // 640)  # every frame that starts inside the audio
    assert single.frames.shape == batched[name].frames.shape
    # Batched and single runs differ only by float reassociation inside XLA.
    diff = np.abs(single.frames.astype(int) - batched[name].frames.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.01, (name, diff.max(), diff.mean())
    assert len(single.audio) == len(single.frames) * 640
    assert "center square" in single.crop


def test_sample_command_writes_synced_mp4_and_reports_bad_requests(tmp_path, capsys):
  from talkjax.data.video_io import read_mp4
  image, audio = write_inputs(tmp_path, "p", 2.0, 7)
  (tmp_path / "broken.png").write_text("not an image")
  lines = [{"image": "p.png", "audio": "p.wav", "seed": 1, "name": "good"},
           {"image": "broken.png", "audio": "p.wav", "name": "bad_image"},
           {"image": "p.png", "audio": "missing.wav", "name": "no_audio"},
           {"image": "p.png"}]
  manifest = tmp_path / "requests.jsonl"
  manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
  code = main(["sample", "--checkpoint", str(shipped_model()), "--manifest", str(manifest),
               "--out", str(tmp_path / "out"), "--gif"])
  captured = capsys.readouterr()
  assert code == 1
  assert "ok good: 50 frames" in captured.out
  for name in ("bad_image", "no_audio", "line_0004", "line_0005"):
    assert f"FAILED {name}" in captured.err
  assert "broken.png" in captured.err and "missing.wav" in captured.err
  assert "1 written, 4 failed" in captured.err
  assert (tmp_path / "out" / "good.gif").exists()
  frames, fps, track = read_mp4(tmp_path / "out" / "good.mp4")
  assert frames.shape == (50, 64, 64, 3) and fps == 25
  # The muxed audio is the driving audio, in place: best lag within 1 ms.
  original, _ = soundfile.read(audio, dtype="float32")
  n = min(len(track), len(original))
  lags = range(-160, 161, 4)
  corr = [np.dot(track[max(0, l):n + min(0, l)], original[max(0, -l):n - max(0, l)]) for l in lags]
  assert abs(list(lags)[int(np.argmax(corr))]) <= 16
  assert abs(len(track) / 16000 - len(frames) / fps) < 1 / fps


def test_bad_single_inputs_are_clear_errors(pipe, tmp_path, capsys):
  image, audio = write_inputs(tmp_path, "q", 1.0, 8)
  empty = tmp_path / "empty.wav"
  empty.write_bytes(b"")
  with pytest.raises(TalkjaxError, match="empty.wav"):
    pipe(str(image), str(empty))
  with pytest.raises(TalkjaxError, match="shorter than one video frame"):
    pipe(str(image), np.zeros(100, np.float32))
  noise = tmp_path / "noise.png"
  Image.fromarray(np.random.default_rng(1).integers(0, 255, (80, 80, 3), np.uint8)).save(noise)
  with pytest.raises(TalkjaxError, match="noise.png: no face found"):
    Pipeline(pipe.sampler, crop="face")(str(noise), str(audio))
  with pytest.raises(TalkjaxError, match="no partner audio"):
    pipe(str(image), str(audio), partner_audio=str(audio))
  with pytest.raises(TalkjaxError, match="unknown IF-MDM sampling option"):
    pipe(str(image), str(audio), temperature=2.0)
  with pytest.raises(TalkjaxError, match="guidance='abc' is not a number"):
    pipe(str(image), str(audio), guidance="abc")
  with pytest.raises(TalkjaxError, match="steps=2.5 is not a whole number"):
    pipe(str(image), str(audio), steps=2.5)
  with pytest.raises(TalkjaxError, match="batch size must be at least 1"):
    Pipeline(pipe.sampler, batch_size=0)
  (tmp_path / "text.jpg").write_text("hello")
  code = main(["sample", "--checkpoint", str(shipped_model()), "--image", str(tmp_path / "text.jpg"),
               "--audio", str(audio), "--out", str(tmp_path / "x.mp4")])
  assert code == 2
  assert "text.jpg" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "I;16"])
def test_any_image_mode_becomes_a_square_rgb_portrait(mode, tmp_path):
  from talkjax.pipelines.inputs import load_image
  rgb = np.random.default_rng(0).integers(0, 255, (90, 70, 3), np.uint8)
  im = Image.fromarray(rgb)
  im = im.convert(mode) if mode != "I;16" else Image.fromarray(rgb[..., 0].astype(np.uint16) * 200)
  im.save(tmp_path / "x.png")
  out, how, _ = load_image(str(tmp_path / "x.png"), 64, "center")
  assert out.shape == (64, 64, 3) and out.dtype == np.uint8
  assert "center square 70x70" in how


def test_one_compilation_serves_every_duration(pipe):
  """Compile time does not grow with the audio: videos of 1 chunk, a partial segment, a
  whole one and more than one (several segments) share one executable per batch shape, and
  a partial segment gives the frames of the same chunks in a longer video."""
  sampler = pipe.sampler
  image, audio = person(14.0, 21)
  w, look = sampler.window * 640, sampler.audio_lookahead
  assert len(audio) >= (sampler.segment_chunks() + 2) * w + look
  seen = {}
  for chunks in (1, 3, sampler.segment_chunks(), sampler.segment_chunks() + 2):
    # Whole chunks and the speech after them that the last one looks ahead to: each chunk
    # sees the audio it sees in the longer videos.
    n = chunks * w + look
    frames = sampler.generate(image[None], audio[None, :n], seed=4)["frames"][0]
    seen[chunks] = frames[:chunks * sampler.window]
  segments = [k for k in sampler._executables if k[0][0] == "segment"]
  assert len(segments) == 1, segments
  longest = seen[max(seen)]
  for chunks, frames in seen.items():
    np.testing.assert_array_equal(frames, longest[:len(frames)])
