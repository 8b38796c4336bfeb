"""The build's resumable middle: each item's result is written to its own file as soon as a
worker has it (atomically: a temp file renamed), so an interrupted build redoes only the
items that were in flight. Examples are .npz files of plain arrays (no pickles); skips are
small JSON files, so a resumed build also remembers what it skipped and why."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from talkjax_datasets.real.items import Skip


def item_name(key: str) -> str:
  return hashlib.sha1(key.encode()).hexdigest()[:20]


class Staging:
  def __init__(self, folder: Path):
    self.folder = Path(folder)
    self.items = self.folder / "items"

  def create(self, settings: dict) -> None:
    self.items.mkdir(parents=True, exist_ok=True)
    _atomic_write(self.folder / "settings.json", json.dumps(settings, indent=1, sort_keys=True).encode())

  def settings(self) -> dict | None:
    path = self.folder / "settings.json"
    return json.loads(path.read_text()) if path.exists() else None

  def done(self) -> dict:
    """key hash -> 'example' | 'skip' for every finished item."""
    out = {}
    if self.items.exists():
      for p in self.items.iterdir():
        if p.name.endswith(".npz"):
          out[p.name[:-4]] = "example"
        elif p.name.endswith(".skip.json"):
          out[p.name[:-10]] = "skip"
    return out

  def write_example(self, key: str, example: dict, meta: dict) -> None:
    frames = example["frames"]
    arrays = {k: v for k, v in example.items() if k != "frames"}
    arrays["frame_ends"] = np.cumsum([len(b) for b in frames]).astype(np.int64)
    arrays["frames_blob"] = np.frombuffer(b"".join(frames), np.uint8)
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    tmp = self.items / f".{item_name(key)}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, self.items / f"{item_name(key)}.npz")

  def write_skip(self, key: str, skip: Skip) -> None:
    _atomic_write(self.items / f"{item_name(key)}.skip.json",
                  json.dumps({"key": key, **skip.as_dict()}).encode())

  def meta(self, key: str) -> dict:
    with np.load(self.items / f"{item_name(key)}.npz") as f:
      return json.loads(f["meta"].tobytes())

  def skip(self, key: str) -> dict:
    return json.loads((self.items / f"{item_name(key)}.skip.json").read_text())

  def example(self, key: str) -> dict:
    with np.load(self.items / f"{item_name(key)}.npz") as f:
      data = {k: f[k] for k in f.files}
    blob, ends = data.pop("frames_blob").tobytes(), data.pop("frame_ends")
    starts = np.concatenate([[0], ends[:-1]])
    data["frames"] = [blob[a:b] for a, b in zip(starts, ends)]
    data["meta"] = json.loads(data["meta"].tobytes())
    return data


def _atomic_write(path: Path, data: bytes) -> None:
  tmp = path.with_name("." + path.name + ".tmp")
  tmp.write_bytes(data)
  os.replace(tmp, path)
