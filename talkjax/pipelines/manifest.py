"""Request manifests: a JSONL file, one request per line.

    {"image": "faces/a.png", "audio": "speech/a.wav", "seed": 3, "out": "a.mp4"}
    {"image": "faces/b.png", "audio": "speech/b.m4a", "options": {"std_scale": 1.5}, "name": "b"}

Keys: image, audio (required); partner_audio, emotion, style_video (a reference clip of
the motion style), seed, name, out, options (the generator's sampling options). Relative
paths are relative to the manifest's folder. A line that is not valid JSON or has unknown
keys is reported (with its line number) and skipped.
"""

from __future__ import annotations

import json
import pathlib

from talkjax.errors import TalkjaxError
from talkjax.pipelines.pipeline import Failure, Request

KEYS = {"image", "audio", "partner_audio", "emotion", "style_video", "seed", "name", "out",
        "options"}


def read_manifest(path) -> list[Request | Failure]:
  path = pathlib.Path(path)
  try:
    lines = path.read_text().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise TalkjaxError(f"the manifest cannot be read ({e})", path=path,
                       fix="pass a UTF-8 JSONL file, one request per line") from e
  base = path.parent
  out = []
  for number, line in enumerate(lines, 1):
    if not line.strip() or line.lstrip().startswith("#"):
      continue
    name = f"line_{number:04d}"
    try:
      entry = json.loads(line)
      if not isinstance(entry, dict):
        raise ValueError("a request must be a JSON object")
      unknown = sorted(set(entry) - KEYS)
      if unknown:
        raise ValueError(f"unknown keys {unknown} (valid: {sorted(KEYS)})")
      missing = [k for k in ("image", "audio") if k not in entry]
      if missing:
        raise ValueError(f"missing {missing}")
      resolve = lambda v: str(base / v) if isinstance(v, str) else v
      options = entry.get("options", {})
      if not isinstance(options, dict):
        raise ValueError("options must be an object")
      out.append(Request(
          image=resolve(entry["image"]), audio=resolve(entry["audio"]),
          partner_audio=resolve(entry["partner_audio"]) if entry.get("partner_audio") else None,
          emotion=entry.get("emotion"), seed=int(entry.get("seed", 0)), knobs=options,
          name=str(entry.get("name", name)), out=resolve(entry["out"]) if entry.get("out") else None,
          style_video=resolve(entry["style_video"]) if entry.get("style_video") else None))
    except (ValueError, TypeError) as e:
      out.append(Failure(name, f"{path}:{number}: {e}"))
  if not out:
    raise TalkjaxError("the manifest holds no requests", path=path,
                       fix='write one JSON object per line: {"image": ..., "audio": ...}')
  return out
