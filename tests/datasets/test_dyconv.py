"""DyConv: the layout (two examples per conversation, tracks swapped between them, turns),
a real build read back with RecordedClips, and the ViCo converter end to end."""

import json
import os
import pathlib
import sys

import numpy as np
import pytest

from talkjax.data.recorded import RecordedClips
from talkjax.errors import TalkjaxError
from talkjax_datasets.dyconv.builder import build
from talkjax_datasets.dyconv.layout import scan
from talkjax_datasets.dyconv.vico import convert
from talkjax_datasets.real.options import BuildOptions

# importlib import mode puts no test folder on sys.path; the media writers live beside us.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from raw_media import speech, write_video, write_wav  # noqa: E402

FPS, SECONDS, FRAMES = 25, 1.28, 32    # 32 frames: two 16-frame records per clip
SPF = 16000 // FPS
OPTIONS = BuildOptions(resolution=64, segment_frames=16)
# (conversation, split, first participant, second participant); the first speaks in the
# first half of the clip, the second in the second half.
TALKS = (("talk1", "train", "ana", "ben"), ("talk2", "val", "cy", "dee"),
         ("talk3", "test", "eve", "fay"))
TURNS = {"ana": [(0.0, 0.6), (1.0, 1.1)], "ben": [(0.64, 1.28)]}


def half(seed, first):
  """(samples, 1) speech in one half of the clip only."""
  x = speech(SECONDS, seed=seed)
  mask = np.zeros((len(x), 1), np.float32)
  mask[:len(x) // 2] = 1.0 if first else 0.0
  mask[len(x) // 2:] = 0.0 if first else 1.0
  return x * mask


def ratio(x):
  """RMS of the first half over the second (large: speech early; small: speech late)."""
  n = len(x) // 2
  rms = lambda y: np.sqrt(np.mean(np.square(y, dtype=np.float64))) + 1e-9
  return rms(x[:n]) / rms(x[n:])


def junk(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b"not decoded: the layout never opens media")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
  root = tmp_path_factory.mktemp("dyconv_raw")
  for n, (name, _, a, b) in enumerate(TALKS):
    folder = root / name
    folder.mkdir()
    early, late = half(2 * n, True), half(2 * n + 1, False)
    if name == "talk1":   # cameras record the room (both voices); the wavs are close-talk
      room = early + late
      write_video(folder / f"{a}.mp4", seconds=SECONDS, audio=room)
      write_video(folder / f"{b}.mp4", seconds=SECONDS, audio=room)
      write_wav(folder / f"{a}.wav", early)
      write_wav(folder / f"{b}.wav", late)
      (folder / "turns.csv").write_text("participant,start,end\n" + "".join(
          f"{who},{s},{e}\n" for who, spans in TURNS.items() for s, e in spans))
    elif name == "talk2":   # dee has no wav: its voice is its camera's sound
      write_video(folder / f"{a}.mp4", seconds=SECONDS)
      write_wav(folder / f"{a}.wav", early)
      write_video(folder / f"{b}.mp4", seconds=SECONDS, audio=late)
    else:
      write_video(folder / f"{a}.mp4", seconds=SECONDS)
      write_video(folder / f"{b}.mp4", seconds=SECONDS)
      write_wav(folder / f"{a}.wav", early)
      write_wav(folder / f"{b}.wav", late)
  for who in ("p", "q", "r"):   # three cameras: not a two-person conversation
    junk(root / "three" / f"{who}.mp4")
  for who in ("x", "y"):
    junk(root / "badturns" / f"{who}.mp4")
  (root / "badturns" / "turns.csv").write_text("participant,start,end\nx,0,1\ny,soon,2\n")
  (root / "conversations.csv").write_text(
      "conversation,split\n" + "".join(f"{c},{s}\n" for c, s, _, _ in TALKS)
      + "three,train\nbadturns,test\n")
  return root


@pytest.fixture(scope="module")
def built(raw, tmp_path_factory):
  out = tmp_path_factory.mktemp("dyconv_out")
  path = build(raw, out, OPTIONS, workers=1)
  return path, json.loads((out / "build_report.json").read_text())


def clip_of(clips, agent):
  return next(i for i, c in enumerate(clips.index) if c["labels"]["agent"] == agent)


def test_layout_gives_two_swapped_examples_per_conversation(raw):
  items, skips = scan(raw)
  assert len(items) == 6
  by_key = {i.key: i for i in items}
  ana, ben = by_key["talk1/ana"], by_key["talk1/ben"]
  assert ana.audio.path == str(raw / "talk1/ana.wav") == ben.partner_audio.path
  assert ben.audio.path == str(raw / "talk1/ben.wav") == ana.partner_audio.path
  assert ana.turns == ((0.0, 0.6), (1.0, 1.1)) and ben.turns == ((0.64, 1.28),)
  assert dict(ana.labels) == {"conversation": "talk1", "agent": "ana", "partner": "ben"}
  assert ana.identity == "talk1/ana" and ana.split == ben.split == "train"
  cy, dee = by_key["talk2/cy"], by_key["talk2/dee"]
  assert dee.audio is None and cy.partner_audio.path == str(raw / "talk2/dee.mp4")
  assert cy.turns is None and dee.turns is None
  reasons = {pathlib.Path(s.source).relative_to(raw).parts[0]: s for s in skips}
  assert set(reasons) == {"three", "badturns"}
  assert reasons["three"].reason == "bad annotation" and "3 participant" in reasons["three"].detail
  assert reasons["badturns"].reason == "bad annotation" and "line 3" in reasons["badturns"].detail


def test_splits_by_hash_keep_a_conversation_together(tmp_path):
  for c in range(6):
    for who in ("a", "b"):
      junk(tmp_path / f"c{c}" / f"{who}.mp4")
  items, skips = scan(tmp_path, seed=1, val=0.2, test=0.2)
  assert not skips and len(items) == 12
  split = {}
  for item in items:
    assert split.setdefault(item.key.split("/")[0], item.split) == item.split
  assert set(split.values()) == {"train", "val", "test"}
  assert scan(tmp_path, seed=1, val=0.2, test=0.2)[0] == items   # deterministic
  # A split file chooses the conversations (unlisted ones are left out); a listed
  # conversation without a folder is reported.
  (tmp_path / "splits.txt").write_text("c0 test\nc1 train\ngone val\n")
  items, skips = scan(tmp_path, split_file=tmp_path / "splits.txt")
  assert sorted((i.key, i.split) for i in items) == [
      ("c0/a", "test"), ("c0/b", "test"), ("c1/a", "train"), ("c1/b", "train")]
  assert [(pathlib.Path(s.source).name, s.reason) for s in skips] == [("gone", "missing video")]
  (tmp_path / "conversations.csv").write_text("conversation,split\nc0,dev\n")
  with pytest.raises(TalkjaxError, match="line 2"):
    scan(tmp_path)


def test_build_stores_own_and_partner_track_on_the_agents_frames(built):
  path, report = built
  assert report["written"] == {"train": 2, "val": 2, "test": 2}
  assert report["skipped"] == {"bad annotation": 2} and report["inputs"] == 8
  for name, split, a, b in TALKS:
    clips = RecordedClips(path, split)
    assert clips.dyadic and len(clips) == 2
    for agent, partner, early in ((a, b, True), (b, a, False)):
      i = clip_of(clips, agent)
      assert clips.index[i]["speaker"] == f"{name}/{agent}"
      assert clips.index[i]["labels"]["partner"] == partner
      n = clips.num_frames(i)
      assert n == FRAMES
      rec = clips.read(i, 0, n)
      assert len(rec["frames"]) == n
      assert rec["audio"].shape == rec["partner_audio"].shape == (n * SPF,)
      # The agent's own voice is where its track speaks, its partner's in the other half.
      own, other = ratio(rec["audio"]), ratio(rec["partner_audio"])
      assert (own > 10 and other < 0.1) if early else (own < 0.1 and other > 10), \
          (name, agent, own, other)


def test_speaking_follows_turns_and_is_unknown_without_them(built):
  path, _ = built
  t = (np.arange(FRAMES) + 0.5) / FPS
  for split, agents in (("train", ("ana", "ben")), ("val", ("cy", "dee"))):
    clips = RecordedClips(path, split)
    for agent in agents:
      i = clip_of(clips, agent)
      speaking = clips.read(i, 0, clips.num_frames(i))["speaking"]
      if agent in TURNS:
        want = np.zeros(FRAMES, np.int32)
        for s, e in TURNS[agent]:
          want[(t >= s) & (t < e)] = 1
        np.testing.assert_array_equal(speaking, want)
      else:
        assert (speaking == -1).all()
  # A window across the record boundary reads the same turns.
  clips = RecordedClips(path, "train")
  i = clip_of(clips, "ana")
  np.testing.assert_array_equal(clips.read(i, 10, 20)["speaking"],
                                clips.read(i, 0, FRAMES)["speaking"][10:20])


def write_vico(root, uuids, *, flat=False, real=True):
  """A ViCo-style folder: videos/ and audios/ (or all in one folder) and train.csv."""
  videos, audios = (root, root) if flat else (root / "videos", root / "audios")
  videos.mkdir(parents=True, exist_ok=True)
  audios.mkdir(parents=True, exist_ok=True)
  for n, uuid in enumerate(uuids):
    for role in ("speaker", "listener"):
      if real:
        write_video(videos / f"{uuid}.{role}.mp4", seconds=SECONDS)
      else:
        junk(videos / f"{uuid}.{role}.mp4")
    write_wav(audios / f"{uuid}.wav", speech(SECONDS, seed=10 + n))
  (root / "train.csv").write_text("video_id,uuid,speaker_id,listener_id\n" + "".join(
      f"v{n},{u},s{n},l{n}\n" for n, u in enumerate(uuids)))


@pytest.fixture(scope="module")
def vico(tmp_path_factory):
  root = tmp_path_factory.mktemp("vico")
  write_vico(root, ["u1"])
  with open(root / "train.csv", "a") as f:   # u2's listener video never arrived
    f.write("v9,u2,s9,l9\n")
  junk(root / "videos" / "u2.speaker.mp4")
  write_wav(root / "audios" / "u2.wav", speech(SECONDS))
  raw = tmp_path_factory.mktemp("vico_dyconv")
  report = convert(root, raw)
  out = tmp_path_factory.mktemp("vico_out")
  return root, raw, report, build(raw, out, OPTIONS, workers=1)


def test_vico_converts_to_the_dyconv_layout(vico):
  root, raw, report, _ = vico
  assert report["converted"] == 1 and report["rows"] == 2
  assert report["skipped"] == {"missing video": 1}
  assert report["skips"][0]["uuid"] == "u2" and "u2.listener.mp4" in report["skips"][0]["detail"]
  assert report["splits"] == {"train": 1} and report["linked"] == 3
  assert (raw / "conversations.csv").read_text() == "conversation,split\nu1,train\n"
  assert sorted(p.name for p in (raw / "u1").iterdir()) == [
      "listener.mp4", "listener.wav", "meta.json", "speaker.mp4", "speaker.wav", "turns.csv"]
  assert os.path.samefile(raw / "u1/speaker.mp4", root / "videos/u1.speaker.mp4")
  assert not (raw / "u2").exists() and not any(p.name.startswith(".") for p in raw.iterdir())
  meta = json.loads((raw / "u1/meta.json").read_text())
  assert meta["columns"] == {"video_id": "v0", "speaker_id": "s0", "listener_id": "l0"}


def test_vico_listener_hears_the_speaker_on_a_silent_own_track(vico):
  *_, path = vico
  clips = RecordedClips(path, "train")
  assert len(clips) == 2
  rms = lambda x: float(np.sqrt(np.mean(np.square(x))))
  speaker = clips.read(clip_of(clips, "speaker"), 0, FRAMES)
  listener = clips.read(clip_of(clips, "listener"), 0, FRAMES)
  assert rms(speaker["audio"]) > 0.01 and not speaker["partner_audio"].any()
  assert rms(listener["partner_audio"]) > 0.01 and not listener["audio"].any()
  np.testing.assert_allclose(listener["partner_audio"], speaker["audio"])
  assert (speaker["speaking"] == 1).all() and (listener["speaking"] == 0).all()


def test_vico_flat_folder_copies_and_bad_csvs(tmp_path):
  root = tmp_path / "vico"
  write_vico(root, ["a1", "a2"], flat=True, real=False)
  (root / "train.csv").rename(root / "extra.csv")   # not a split name: splits by hash
  report = convert(root, tmp_path / "out", link=False)
  assert report["converted"] == 2 and report["copied"] == 6 and report["linked"] == 0
  assert report["splits"] is None and not (tmp_path / "out/conversations.csv").exists()
  assert not os.path.samefile(tmp_path / "out/a1/speaker.wav", root / "a1.wav")
  import soundfile as sf
  silence, rate = sf.read(str(tmp_path / "out/a1/listener.wav"))
  assert rate == 16000 and len(silence) == sf.info(str(root / "a1.wav")).frames
  assert not silence.any()
  # Converting again replaces the conversations in place; rows that cannot be converted
  # are reported, not raised.
  for role in ("speaker", "listener"):
    junk(root / f"a3.{role}.mp4")
  (root / "a3.wav").write_bytes(b"RIFF but no wave")
  with open(root / "extra.csv", "a") as f:
    f.write("v2,a3,s2,l2\nv0,a1,s0,l0\nv5,../up,s5,l5\n")
  report = convert(root, tmp_path / "out", csv=root / "extra.csv")
  assert report["converted"] == 2 and report["rows"] == 5
  assert report["skipped"] == {"bad uuid": 1, "duplicate uuid": 1, "unreadable audio": 1}
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a1", "a2"]
  (root / "extra.csv").write_text("video_id,speaker_id\nv0,s0\n")
  with pytest.raises(TalkjaxError, match="no `uuid` column"):
    convert(root, tmp_path / "out")
  (root / "extra.csv").unlink()
  with pytest.raises(TalkjaxError, match="no CSV"):
    convert(root, tmp_path / "out")


def test_infp_both_stages_train_from_the_dyconv_build(built, tmp_path):
  """INFP (the dyconv_512 configs' family) trains from a DyConv build: stage 1 on frame
  pairs, stage 2 on motion codes cached with both tracks of each example (the agent's own
  and the partner's, as the build aligned them); models smaller than the tiny configs', 2
  steps each."""
  import jax
  from talkjax import config as cfg
  from talkjax.models import make_task
  from talkjax.train.loop import train
  path, _ = built
  data = ["data.kind=dyconv", f"data.path={path}", "data.batch_size=2", "train.steps=2",
          "checkpoint.every=2", "checkpoint.async_save=False"]
  config = cfg.load_config("infp/synthtalk_tiny_stage1", data + ["model.channels=(8, 8, 16, 16)",
                                                                "model.disc_channels=(8, 8, 8, 8)",
                                                                "model.latent=24"])
  train(config, make_task(config), tmp_path / "s1", progress=False, devices=jax.devices()[:1])
  config = cfg.load_config("infp/synthtalk_tiny_stage2", data + [
      f"stage1.workdir={tmp_path / 's1'}", "model.hidden=32", "model.layers=1",
      "model.heads=2", "model.guider.heads=2", "data.stride=1", "model.window=16",
      "model.previous=4", "model.audio.n_mels=8"])
  train(config, make_task(config), tmp_path / "s2", progress=False, devices=jax.devices()[:1])
  logged = [json.loads(x) for x in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in logged if "loss" in m][-1] == 2
  assert all(np.isfinite(m["loss"]) for m in logged if "loss" in m)
  cache = list((tmp_path / "s1" / "motion_codes").glob("step2/dyconv_*/train_dyadic.npz"))
  assert len(cache) == 1
  codes = np.load(cache[0])
  clips = RecordedClips(path, "train")
  assert codes["motion"].shape[0] == sum(c["frames"] for c in clips.index)
  for i in range(len(clips)):
    rec = clips.read(i, 0, clips.num_frames(i))
    a, b = codes["offsets"][i] * SPF, codes["offsets"][i + 1] * SPF
    np.testing.assert_array_equal(codes["audio"][a:b], rec["audio"])
    np.testing.assert_array_equal(codes["partner_audio"][a:b], rec["partner_audio"])
