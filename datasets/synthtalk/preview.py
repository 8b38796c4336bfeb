"""A look at a built set (SynthTalk or a real build): a PNG contact sheet and an mp4 with
sound.

Each contact-sheet row is one clip (8 frames spread over it) with its identity, emotion,
intensity and the speaking state of each shown frame (? and - where a real set has no
label); the mp4 plays the clips one after the other with their audio (dyadic sets mix the
partner in at a lower level). Real clips are shown up to their first MAX_SECONDS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from talkjax.data.frames import decode_frame
from talkjax.data.prepare import open_clips
from talkjax.data.video_io import write_mp4
from talkjax.errors import TalkjaxError
from talkjax_datasets.synthtalk.spec import EMOTIONS

COLUMNS = 8
MAX_SECONDS = 10


def write_preview(data, out, *, split: str = "train", clips: int = 4) -> tuple[Path, Path]:
  source = open_clips(data, split)
  if clips < 1:
    raise TalkjaxError(f"--clips must be >= 1, got {clips}")
  out = Path(out)
  if out.exists() and not out.is_dir():
    raise TalkjaxError("--out must be a folder", path=out, fix="pick a folder path")
  out.mkdir(parents=True, exist_ok=True)
  chosen = [_clip(source, i) for i in range(min(clips, len(source)))]
  rows, videos, sounds = [], [], []
  for clip in chosen:
    frames = clip["frames"]
    picks = np.linspace(0, len(frames) - 1, COLUMNS).astype(int)
    row = Image.fromarray(np.concatenate([frames[i] for i in picks], axis=1))
    emotion, level = int(clip["emotion"][0]), int(clip["intensity"][0])
    label = (f"id {clip['who']}  {EMOTIONS[emotion] if emotion >= 0 else '?'} "
             f"L{level + 1 if level >= 0 else '?'}  speaking "
             + "".join(str(int(clip["speaking"][i])) if clip["speaking"][i] >= 0 else "-"
                       for i in picks))
    canvas = Image.new("RGB", (row.width, row.height + 14), (0, 0, 0))
    canvas.paste(row, (0, 14))
    ImageDraw.Draw(canvas).text((3, 1), label, fill=(255, 255, 255))
    rows.append(np.asarray(canvas))
    videos.append(frames)
    audio = clip["audio"].astype(np.float32)
    if "partner_audio" in clip:
      audio = audio + 0.6 * clip["partner_audio"].astype(np.float32)
    sounds.append(audio)
  sheet_path, video_path = out / "contact_sheet.png", out / "preview.mp4"
  Image.fromarray(np.concatenate(rows, axis=0)).save(sheet_path)
  write_mp4(video_path, np.concatenate(videos), source.fps, np.concatenate(sounds))
  return sheet_path, video_path


def _clip(source, index: int) -> dict:
  """A clip (a real one cut to MAX_SECONDS) with frames decoded and a printable identity."""
  n = min(source.num_frames(index), MAX_SECONDS * source.fps)
  clip = source.read(index, 0, n)
  clip["frames"] = np.stack([decode_frame(b, source.path) for b in clip["frames"]])
  index_entry = getattr(source, "index", None)
  clip["who"] = index_entry[index]["speaker"] if index_entry else int(clip["identity"])
  return clip
