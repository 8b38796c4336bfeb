"""The HDTF layout: YouTube videos, the official annotation files that cut them into clips
and give each clip a fixed square crop, and the downloaded (or already cut) videos.

    RAW/.../{SUBSET}_annotion_time.txt   VIDEO.mp4 MM:SS-MM:SS MM:SS-MM:SS ...   (clip times)
    RAW/.../{SUBSET}_crop_wh.txt         VIDEO_I.mp4 LEFT WIDTH TOP HEIGHT      (clip I's crop)
    RAW/.../{SUBSET}_resolution.txt      VIDEO.mp4 HEIGHT   (the height the crops are in; 0 unknown)
    RAW/.../VIDEO.mp4                    the whole video: clip I is cut by its times
    RAW/.../VIDEO_I.mp4                  or clip I already cut (preferred when both are there)

SUBSET is RD, WDA or WRA (any prefix is accepted); `annotion` is HDTF's own spelling
(`annotation` is accepted too); `{SUBSET}_video_url.txt` is not needed. Files are found
anywhere under RAW, videos by file name. The annotated crops replace the face detector.
Splits are by video: a seeded hash of the annotated video names, or a --split-file.
"""

from __future__ import annotations

import re
from pathlib import Path

from talkjax.errors import TalkjaxError
from talkjax_datasets.real.items import Item, Media, Skip, read_split_file, split_by_hash

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
KINDS = {"time": ("_annotion_time.txt", "_annotation_time.txt"), "crop": ("_crop_wh.txt",),
         "resolution": ("_resolution.txt",)}
TIME = re.compile(r"^(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)$")


def _annotation_files(raw: Path) -> dict:
  """subset -> kind -> path (the first in path order when a subset's file is there twice)."""
  found = {}
  for p in sorted(raw.rglob("*.txt")):
    if any(part.startswith(".") for part in p.relative_to(raw).parts):
      continue
    for kind, endings in KINDS.items():
      for ending in endings:
        if p.name.endswith(ending) and len(p.name) > len(ending):
          found.setdefault(p.name[:-len(ending)], {}).setdefault(kind, p)
  return found


def seconds(text: str) -> float:
  """'01:30' or '1:01:30' (or with decimals: '01:30.5') -> seconds; ValueError otherwise."""
  match = TIME.match(text)
  if not match:
    raise ValueError(f"{text!r} is not MM:SS or H:MM:SS")
  hours, minutes, secs = match.groups()
  return int(hours or 0) * 3600 + int(minutes) * 60 + float(secs)


def _lines(path: Path):
  """(line number, fields) of the non-empty lines."""
  with open(path, encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, 1):
      fields = line.split()
      if fields:
        yield number, fields


def _bad(path, number, why, fields) -> Skip:
  return Skip(str(path), "bad annotation", f"{path} line {number}: {why}: {' '.join(fields)!r}")


def _read_times(path, skips):
  """video -> [(start, end) seconds] of its clips, in the file's order."""
  out = {}
  for number, fields in _lines(path):
    video = Path(fields[0]).stem
    try:
      spans = []
      for text in fields[1:]:
        start, sep, end = text.partition("-")
        if not sep:
          raise ValueError(f"{text!r} is not START-END")
        spans.append((seconds(start), seconds(end)))
        if spans[-1][1] <= spans[-1][0]:
          raise ValueError(f"{text!r} ends before it starts")
      if not spans:
        raise ValueError("no clip times")
    except ValueError as e:
      skips.append(_bad(path, number, str(e), fields))
      continue
    if video in out:
      skips.append(_bad(path, number, f"{video} is annotated twice", fields))
      continue
    out[video] = spans
  return out


def _read_crops(path, skips):
  """clip name -> (left, top, side) of its square, centred on the annotated rectangle."""
  out = {}
  for number, fields in _lines(path):
    try:
      if len(fields) != 5:
        raise ValueError("not `CLIP.mp4 LEFT WIDTH TOP HEIGHT`")
      left, width, top, height = (float(v) for v in fields[1:])
      if width <= 0 or height <= 0 or left < 0 or top < 0:
        raise ValueError("a negative position or an empty rectangle")
    except ValueError as e:
      skips.append(_bad(path, number, str(e), fields))
      continue
    side = max(width, height)
    out[Path(fields[0]).stem] = (left + (width - side) / 2, top + (height - side) / 2, side)
  return out


def _read_heights(path, skips):
  """video -> the frame height its crops are given at (None: unknown, used as is)."""
  out = {}
  for number, fields in _lines(path):
    try:
      if len(fields) != 2:
        raise ValueError("not `VIDEO.mp4 HEIGHT`")
      height = int(fields[1])
      if height < 0:
        raise ValueError("a negative height")
    except ValueError as e:
      skips.append(_bad(path, number, str(e), fields))
      continue
    out[Path(fields[0]).stem] = height or None
  return out


def scan(raw, *, seed: int = 0, val: float = 0.05, test: float = 0.05, split_file=None,
         notes: dict | None = None):
  """-> (items, skips). `notes`, when given, receives the videos a split file left out."""
  raw = Path(raw)
  if not raw.is_dir():
    raise TalkjaxError("the raw folder does not exist", path=raw,
                       fix="pass the HDTF folder (annotation files and videos)")
  files = {s: kinds for s, kinds in _annotation_files(raw).items() if "time" in kinds}
  if not files:
    raise TalkjaxError("no HDTF annotation files here (looked for {SUBSET}_annotion_time.txt, "
                       "{SUBSET}_crop_wh.txt and {SUBSET}_resolution.txt, e.g. "
                       "RD_annotion_time.txt)", path=raw,
                       fix="copy the HDTF_dataset folder of the HDTF repository into --raw")
  for subset, kinds in sorted(files.items()):
    if "crop" not in kinds:
      raise TalkjaxError(f"{subset}_crop_wh.txt is missing beside {kinds['time'].name}",
                         path=kinds["time"].parent,
                         fix=f"copy {subset}_crop_wh.txt from the HDTF repository into --raw")
  videos = {}
  for p in sorted(raw.rglob("*")):
    if (p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(raw).parts)):
      videos.setdefault(p.stem, p)

  skips, annotated = [], {}
  for subset, kinds in sorted(files.items()):
    times = _read_times(kinds["time"], skips)
    crops = _read_crops(kinds["crop"], skips)
    heights = _read_heights(kinds["resolution"], skips) if "resolution" in kinds else {}
    for video, spans in times.items():
      if video in annotated:
        skips.append(Skip(video, "bad annotation", f"annotated in {annotated[video][0]} and "
                          f"{subset}"))
        continue
      annotated[video] = (subset, spans, crops, heights.get(video), kinds["crop"])

  chosen = read_split_file(split_file) if split_file else None
  if chosen is not None:   # `Radio11.mp4 train` names the video as well as `Radio11 train`
    chosen = {(Path(k).stem if Path(k).suffix.lower() in VIDEO_SUFFIXES else k): v
              for k, v in chosen.items()}
  by_video = None if chosen else split_by_hash(annotated, seed=seed, val=val, test=test)
  items, unlisted = [], []
  for video, (subset, spans, crops, height, crop_file) in sorted(annotated.items()):
    split = chosen.get(video) if chosen is not None else by_video[video]
    if split is None:
      unlisted.append(video)
      continue   # not listed: left out on purpose
    whole = videos.get(video)
    if whole is None and not any(f"{video}_{i}" in videos for i in range(len(spans))):
      skips.append(Skip(video, "missing video", f"neither {video}.mp4 nor its cut clips "
                        f"({video}_0.mp4, ...) are under {raw}"))
      continue
    for i, span in enumerate(spans):
      key = f"{video}_{i}"
      crop = crops.get(key)
      if crop is None:
        skips.append(Skip(key, "bad annotation", f"no crop for {key}.mp4 in {crop_file}"))
        continue
      cut = videos.get(key)
      if cut is None and whole is None:
        skips.append(Skip(key, "missing video", f"neither {video}.mp4 nor {key}.mp4 is under "
                          f"{raw}"))
        continue
      items.append(Item(key=key, split=split, identity=video,
                        video=Media(str(cut if cut is not None else whole)),
                        span=None if cut is not None else span, crop=crop, crop_height=height,
                        labels=(("subset", subset), ("video", video))))
  if notes is not None and chosen is not None:
    notes["videos_not_in_split_file"] = unlisted
  return items, skips
