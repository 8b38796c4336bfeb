"""ViCo (Zhou et al. 2022, responsive listening heads) -> the DyConv layout, so a public
dyadic dataset trains and tests the DyConv pipeline before DyConv itself is out.

ViCo ships, per conversation `uuid`: `{uuid}.speaker.mp4` and `{uuid}.listener.mp4` (the
two faces, time-aligned), `{uuid}.wav` (the speaker's voice; the listener never speaks),
and CSV files with a `uuid` column (the release's train.csv / test.csv also name
video_id, speaker_id, listener_id). Media may sit in RAW itself or in RAW/videos and
RAW/audios, as the release unpacks. Each conversation becomes

    OUT/{uuid}/speaker.mp4    speaker.wav   (the uuid.wav)
    OUT/{uuid}/listener.mp4   listener.wav  (silence as long as the speaker's wav)
    OUT/{uuid}/turns.csv      the speaker speaks throughout, the listener never
    OUT/{uuid}/meta.json      the CSV row's other columns (ignored by the build)

and OUT/conversations.csv fixes the splits when every CSV is named after one (train.csv,
val.csv, test.csv). The listener gets a silent track of its own rather than none: without
it the build would take the listener's own audio from its camera file, which in ViCo holds
no speech of the listener (or none at all).

Conversations are written whole or not at all (into a hidden folder, renamed at the end),
so an interrupted conversion is simply run again.
"""

from __future__ import annotations

import csv as csv_lib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from talkjax.errors import TalkjaxError
from talkjax_datasets.dyconv.layout import CONVERSATIONS, TURNS
from talkjax_datasets.real.items import SPLITS

# Where a ViCo member may be, relative to the ViCo folder (the first one found is used).
MEDIA_FOLDERS = (".", "videos", "audios")
CHUNK = 1 << 16   # samples of silence written at a time


def convert(vico_dir, out_dir, *, csv=None, link=True) -> dict:
  """Write the DyConv layout for every conversation the CSV(s) name; returns a report:
  rows read, conversations converted, skips by reason (with the particulars), files
  hard-linked or copied, and the splits written to conversations.csv (None when the CSV
  names do not give them). A missing or unreadable member skips its conversation only."""
  vico_dir, out_dir = Path(vico_dir).expanduser(), Path(out_dir).expanduser()
  if not vico_dir.is_dir():
    raise TalkjaxError("the ViCo folder does not exist", path=vico_dir,
                       fix="pass the folder holding {uuid}.speaker.mp4, {uuid}.listener.mp4 "
                           "and {uuid}.wav")
  tables = _tables(vico_dir, csv)
  rows = [(table, row) for table in tables for row in _read_table(table)]
  try:
    out_dir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise TalkjaxError(f"cannot create the output folder ({e})", path=out_dir,
                       fix="pick a writable --out") from e
  skips, splits, seen = [], {}, set()
  files = Counter()
  for table, row in rows:
    uuid = (row.get("uuid") or "").strip()
    why = _check_uuid(uuid, seen)
    if why:
      skips.append({"uuid": uuid, "reason": why[0], "detail": f"{table.name}: {why[1]}"})
      continue
    seen.add(uuid)
    found = _members(vico_dir, uuid)
    if "reason" in found:
      skips.append({"uuid": uuid, **found})
      continue
    written = _write_conversation(out_dir, uuid, found, table, row, link)
    if "reason" in written:
      skips.append({"uuid": uuid, **written})
      continue
    files.update(written)
    splits[uuid] = table.stem if table.stem in SPLITS else None
  known = bool(splits) and all(splits.values())
  if known:
    text = "conversation,split\n" + "".join(f"{u},{s}\n" for u, s in sorted(splits.items()))
    _atomic_text(out_dir / CONVERSATIONS, text)
  return {
      "vico": str(vico_dir), "out": str(out_dir), "csv": [str(t) for t in tables],
      "rows": len(rows), "converted": len(splits),
      "skipped": dict(sorted(Counter(s["reason"] for s in skips).items())),
      "skips": sorted(skips, key=lambda s: (s["reason"], s["uuid"])),
      "linked": files["linked"], "copied": files["copied"],
      "splits": dict(sorted(Counter(splits.values()).items())) if known else None,
  }


def summary(report: dict) -> str:
  """The report as a few lines for the command line."""
  lines = [f"vico: {report['converted']} of {report['rows']} conversations converted -> "
           f"{report['out']} ({report['linked']} files hard-linked, {report['copied']} copied)"]
  if report["splits"]:
    lines.append("splits from the CSV names: " +
                 ", ".join(f"{s} {n}" for s, n in report["splits"].items()))
  else:
    lines.append("no split per CSV name (train/val/test.csv): the build splits by hash")
  if report["skipped"]:
    lines.append("skipped: " + ", ".join(f"{r} {n}" for r, n in report["skipped"].items()))
    for s in report["skips"][:5]:
      lines.append(f"  {s['reason']}: {s['uuid']} ({s['detail']})")
    if len(report["skips"]) > 5:
      lines.append(f"  ... {len(report['skips']) - 5} more")
  return "\n".join(lines)


def _tables(vico_dir: Path, csv) -> list[Path]:
  if csv is None:
    tables = sorted(p for p in vico_dir.glob("*.csv") if p.is_file())
    if not tables:
      raise TalkjaxError("no CSV in the ViCo folder", path=vico_dir,
                         fix="pass the annotation CSV (it needs a `uuid` column) with --csv")
    return tables
  tables = [Path(p).expanduser() for p in ([csv] if isinstance(csv, (str, os.PathLike)) else csv)]
  for table in tables:
    if not table.is_file():
      raise TalkjaxError("the CSV does not exist", path=table, fix="check the --csv path")
  return tables


def _read_table(table: Path) -> list[dict]:
  try:
    with open(table, newline="") as f:
      reader = csv_lib.DictReader(f)
      columns = [c.strip() for c in reader.fieldnames or []]
      reader.fieldnames = columns
      if "uuid" not in columns:
        raise TalkjaxError(f"the CSV has no `uuid` column (it has {columns})", path=table,
                           fix="pass ViCo's annotation CSV, whose header names `uuid`")
      return [row for row in reader if any((v or "").strip() for v in row.values()
                                           if isinstance(v, str))]
  except (OSError, UnicodeDecodeError, csv_lib.Error) as e:
    raise TalkjaxError(f"the CSV cannot be read ({e})", path=table,
                       fix="pass ViCo's annotation CSV") from e


def _check_uuid(uuid: str, seen: set):
  """(reason, detail) when the name cannot be a conversation folder, else None."""
  if not uuid or uuid.startswith(".") or any(c in uuid for c in "/\\") or uuid == CONVERSATIONS:
    return "bad uuid", f"{uuid!r} cannot name a conversation folder"
  if uuid in seen:
    return "duplicate uuid", f"{uuid} is listed more than once (the first row is kept)"
  return None


def _members(vico_dir: Path, uuid: str) -> dict:
  """{role: path} for the three members, or {reason, detail} naming what is missing."""
  def find(name):
    return next((vico_dir / d / name for d in MEDIA_FOLDERS if (vico_dir / d / name).is_file()),
                None)
  names = {"speaker.mp4": f"{uuid}.speaker.mp4", "listener.mp4": f"{uuid}.listener.mp4",
           "speaker.wav": f"{uuid}.wav"}
  found = {role: find(name) for role, name in names.items()}
  missing = [names[role] for role, path in found.items() if path is None]
  if missing:
    reason = "missing video" if any(m.endswith(".mp4") for m in missing) else "missing audio"
    return {"reason": reason, "detail": f"no {', '.join(missing)} in "
            + ", ".join(str(vico_dir / d) for d in MEDIA_FOLDERS)}
  return found


def _write_conversation(out_dir: Path, uuid: str, found: dict, table: Path, row: dict,
                        link: bool) -> dict:
  """Counts of files linked / copied, or {reason, detail} when the speaker's wav cannot be
  read (nothing is left behind then)."""
  import soundfile as sf
  try:
    info = sf.info(str(found["speaker.wav"]))
  except (RuntimeError, OSError) as e:   # soundfile raises LibsndfileError, a RuntimeError
    return {"reason": "unreadable audio", "detail": f"{found['speaker.wav']}: {e}"}
  if info.frames <= 0 or info.samplerate <= 0:
    return {"reason": "unreadable audio", "detail": f"{found['speaker.wav']}: holds no samples"}
  seconds = info.frames / info.samplerate
  staging, final = out_dir / f".{uuid}.partial", out_dir / uuid
  counts = Counter()
  try:
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for role in ("speaker.mp4", "listener.mp4", "speaker.wav"):
      counts[_place(found[role], staging / role, link)] += 1
    _silence(staging / "listener.wav", info.frames, info.samplerate)
    (staging / TURNS).write_text(f"participant,start,end\nspeaker,0,{seconds:.6f}\n")
    meta = {"source": "vico", "uuid": uuid, "csv": table.name,
            "columns": {k: v for k, v in row.items() if k != "uuid" and isinstance(k, str)},
            "roles": {"speaker": "speaks throughout (its track is ViCo's wav)",
                      "listener": "never speaks (its track is silence)"}}
    (staging / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    if final.exists():
      shutil.rmtree(final)
    os.replace(staging, final)
  except OSError as e:
    shutil.rmtree(staging, ignore_errors=True)
    raise TalkjaxError(f"cannot write conversation {uuid} ({e})", path=final,
                       fix="check the output folder is writable and has room") from e
  return dict(counts)


def _place(src: Path, dst: Path, link: bool) -> str:
  """Hard-link src at dst (no space used, the source untouched), else copy it."""
  if link:
    try:
      os.link(src, dst)
      return "linked"
    except OSError:   # another file system, or one without hard links
      pass
  shutil.copyfile(src, dst)
  return "copied"


def _silence(path: Path, frames: int, rate: int) -> None:
  import soundfile as sf
  zeros = np.zeros(min(frames, CHUNK), np.int16)
  with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
    for start in range(0, frames, CHUNK):
      f.write(zeros[:min(CHUNK, frames - start)])


def _atomic_text(path: Path, text: str) -> None:
  tmp = path.with_name("." + path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)
