"""The clips layout: any folder of talking-face videos with sound.

    RAW/ID/.../NAME.mp4     VoxCeleb-style: the first folder names the person
    RAW/NAME.mp4            CelebV-style: each file is its own person

Video files: .mp4 .mov .mkv .webm .avi (any case). A .wav/.m4a/.flac beside a video with the
same name is its speech track; otherwise the video's own audio is used. Splits are by
person (no one is in two splits): from --split-file (`NAME SPLIT` lines, NAME a person or a
video's path relative to RAW without extension) or by a seeded hash.
"""

from __future__ import annotations

from pathlib import Path

from talkjax.errors import TalkjaxError
from talkjax_datasets.real.items import Item, Media, read_split_file, split_by_hash

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
AUDIO_SUFFIXES = (".wav", ".m4a", ".flac")


def scan(raw, *, seed: int = 0, val: float = 0.05, test: float = 0.05, split_file=None):
  raw = Path(raw)
  if not raw.is_dir():
    raise TalkjaxError("the raw folder does not exist", path=raw, fix="pass the folder of videos")
  videos = sorted(p for p in raw.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(raw).parts))
  people = {}
  for p in videos:
    rel = p.relative_to(raw)
    people[p] = rel.parts[0] if len(rel.parts) > 1 else p.stem
  chosen = read_split_file(split_file) if split_file else None
  by_person = None if chosen else split_by_hash(people.values(), seed=seed, val=val, test=test)
  items = []
  for p in videos:
    key = p.relative_to(raw).with_suffix("").as_posix()
    person = people[p]
    if chosen is not None:
      split = chosen.get(key, chosen.get(person))
      if split is None:
        continue   # not listed: left out on purpose
    else:
      split = by_person[person]
    speech = next((p.with_suffix(s) for s in AUDIO_SUFFIXES if p.with_suffix(s).is_file()), None)
    items.append(Item(key=key, split=split, identity=person, video=Media(str(p)),
                      audio=Media(str(speech)) if speech else None,
                      labels=(("person", person),)))
  return items, []
