"""The MEAD layout: per speaker, videos by camera view, emotion and intensity, and the same
sentences' speech as m4a, either extracted or still in the archives MEAD ships.

    RAW/ID/video/VIEW/EMOTION/level_N/NNN.mp4      extracted
    RAW/ID/audio/EMOTION/level_N/NNN.m4a
    RAW/ID/video.tar   members video/VIEW/EMOTION/level_N/NNN.mp4    as downloaded
    RAW/ID/audio.tar   members audio/EMOTION/level_N/NNN.m4a

Both forms may be mixed across speakers (and within one: extracted files win over the
archive's). Archives are read in place (members are copied out one at a time while
building), so the tars need not be unpacked. The speech track of a video is
the m4a of the same emotion, level and number; without one, the video's own sound is used.
Splits are by speaker: MEAD's standard speaker-disjoint split, or a --split-file.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

from talkjax.errors import TalkjaxError
from talkjax_datasets.real.items import Item, Media, Skip, read_split_file
from talkjax_datasets.synthtalk.spec import EMOTIONS

VIEWS = ("front", "down", "left_30", "left_60", "right_30", "right_60", "top")
LEVEL = re.compile(r"^level_([123])$")


def _speakers(spec: str) -> list[str]:
  """'M003 M022-M025' -> ['M003', 'M022', 'M023', 'M024', 'M025']."""
  out = []
  for part in spec.split():
    first, _, last = part.partition("-")
    if not last:
      out.append(first)
      continue
    out += [f"{first[0]}{n:03d}" for n in range(int(first[1:]), int(last[1:]) + 1)]
  return out


# The standard speaker-disjoint split of MEAD (train / val / test speakers).
STANDARD_SPLIT = {
    **{s: "train" for s in _speakers(
        "M003 M005 M007 M009 M011 M012 M013 M019 M022-M031 W009 W011 W014 W015 W016 W018 W019 "
        "W021 W023-W026 W028 W029")},
    **{s: "val" for s in _speakers("M032-M035 W033 W035 W036")},
    **{s: "test" for s in _speakers("M037 M039-M042 W037 W038 W040")},
}


def parse(parts, *, audio: bool):
  """(view, emotion, level, number) of a video's path below `video/` (view None for audio,
  whose path below `audio/` has no view), or a string saying why it does not parse."""
  parts = list(parts)
  want = 3 if audio else 4
  if len(parts) != want:
    where = "audio/EMOTION/level_N/NNN.m4a" if audio else "video/VIEW/EMOTION/level_N/NNN.mp4"
    return f"not at {where}"
  view = None if audio else parts.pop(0)
  emotion, level, name = parts
  if emotion not in EMOTIONS:
    return f"unknown emotion {emotion!r} (MEAD's are {', '.join(EMOTIONS)})"
  match = LEVEL.match(level)
  if not match:
    return f"unknown intensity folder {level!r} (level_1, level_2 or level_3)"
  return view, emotion, int(match.group(1)), Path(name).stem


def _tar_names(path: Path, skips: list) -> list[str] | None:
  """The file members of an archive, or None (and a skip) when it cannot be read."""
  try:
    with tarfile.open(path, "r:") as tar:   # uncompressed, as MEAD ships them
      return [m.name for m in tar.getmembers() if m.isfile()]
  except (tarfile.TarError, OSError, EOFError) as e:
    skips.append(Skip(str(path), "unreadable archive", f"{type(e).__name__}: {e}"))
    return None


def _below(name: str, top: str):
  """The parts of an archive member's path below its `top` folder (`video`, `audio`), or
  None. Tolerates a leading ./ or ID/ in front of it."""
  parts = [p for p in name.split("/") if p not in ("", ".")]
  return parts[parts.index(top) + 1:] if top in parts else None


def _files(folder: Path, suffix: str):
  """(path, parts below folder) of the non-hidden `suffix` files under folder."""
  for p in sorted(folder.rglob("*")):
    rel = p.relative_to(folder).parts
    if p.is_file() and p.suffix.lower() == suffix and not any(r.startswith(".") for r in rel):
      yield p, rel


def _speaker_media(root: Path, top: str, suffix: str, skips: list):
  """(Media, parts below `top`) of one speaker's videos or speech: the archive's members,
  then the extracted files (later ones replace earlier ones with the same parts)."""
  found = {}
  tar = root / f"{top}.tar"
  if tar.is_file():
    for name in _tar_names(tar, skips) or ():
      parts = _below(name, top)
      if parts and name.lower().endswith(suffix) and not any(p.startswith(".") for p in parts):
        found[tuple(parts)] = Media(str(tar), member=name)
  if (root / top).is_dir():
    for p, parts in _files(root / top, suffix):
      found[tuple(parts)] = Media(str(p))
  return found


def scan(raw, *, views=("front",), split_file=None, notes: dict | None = None):
  """-> (items, skips). `notes`, when given, receives the speakers the split left out or
  put in train for want of a standard assignment (for the build report)."""
  raw = Path(raw)
  if not raw.is_dir():
    raise TalkjaxError("the raw folder does not exist", path=raw,
                       fix="pass the MEAD folder holding one folder per speaker (M003, W009, ...)")
  views = tuple(views)
  unknown = [v for v in views if v not in VIEWS]
  if unknown or not views:
    raise TalkjaxError(f"unknown MEAD view(s) {unknown or 'none given'}",
                       fix=f"pick from {', '.join(VIEWS)} (comma-separated)")
  chosen = read_split_file(split_file) if split_file else None
  items, skips, outside, unlisted = [], [], [], []
  roots = sorted(p for p in raw.iterdir() if p.is_dir() and not p.name.startswith(".")
                 and ((p / "video").is_dir() or (p / "video.tar").is_file()))
  for root in roots:
    speaker = root.name
    if chosen is not None:
      split = chosen.get(speaker)
      if split is None:
        unlisted.append(speaker)
        continue   # not listed: left out on purpose
    else:
      split = STANDARD_SPLIT.get(speaker)
      if split is None:
        outside.append(speaker)
        split = "train"
    videos = _speaker_media(root, "video", ".mp4", skips)
    speech = {}
    if videos:
      for parts, media in _speaker_media(root, "audio", ".m4a", skips).items():
        parsed = parse(parts, audio=True)
        if not isinstance(parsed, str):
          speech[parsed[1:]] = media
    for parts, media in sorted(videos.items()):
      if parts[0] not in views:
        continue   # another camera (or not a view at all): not asked for
      parsed = parse(parts, audio=False)
      if isinstance(parsed, str):
        skips.append(Skip(str(media), "bad annotation", parsed))
        continue
      view, emotion, level, number = parsed
      items.append(Item(
          key=f"{speaker}/{view}/{emotion}/level_{level}/{number}", split=split,
          identity=speaker, video=media, audio=speech.get((emotion, level, number)),
          emotion=EMOTIONS.index(emotion), intensity=level - 1,
          labels=(("view", view), ("emotion", emotion), ("level", str(level)))))
  if notes is not None:
    if chosen is None:
      notes["speakers_outside_standard_split"] = outside
    else:
      notes["speakers_not_in_split_file"] = unlisted
  return sorted(items, key=lambda i: i.key), skips
