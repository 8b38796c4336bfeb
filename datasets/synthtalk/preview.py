"""A look at a built SynthTalk set: a PNG contact sheet and an mp4 with sound.

Each contact-sheet row is one clip (8 frames spread over it) with its identity, emotion,
intensity and the speaking state of each shown frame; the mp4 plays the clips one after
the other with their audio (dyadic sets mix the partner in at a lower level).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from talkjax.data.synthtalk import SynthTalkClips
from talkjax.data.video_io import write_mp4
from talkjax.errors import TalkjaxError
from talkjax_datasets.synthtalk.spec import EMOTIONS

COLUMNS = 8


def write_preview(data, out, *, split: str = "train", clips: int = 4) -> tuple[Path, Path]:
  source = SynthTalkClips(data, split)
  if clips < 1:
    raise TalkjaxError(f"--clips must be >= 1, got {clips}")
  out = Path(out)
  if out.exists() and not out.is_dir():
    raise TalkjaxError("--out must be a folder", path=out, fix="pick a folder path")
  out.mkdir(parents=True, exist_ok=True)
  chosen = [source.clip(i) for i in range(min(clips, len(source)))]
  rows, videos, sounds = [], [], []
  for clip in chosen:
    frames = clip["frames"]
    picks = np.linspace(0, len(frames) - 1, COLUMNS).astype(int)
    row = Image.fromarray(np.concatenate([frames[i] for i in picks], axis=1))
    label = (f"id {int(clip['identity'])}  {EMOTIONS[int(clip['emotion'][0])]} "
             f"L{int(clip['intensity'][0]) + 1}  speaking "
             + "".join(str(int(clip["speaking"][i])) for i in picks))
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
