"""The build every real dataset shares: items -> staged results (parallel, resumable) ->
TFDS array_record + clips.json + build_report.json.

    <out>/<name>/<config>/1.0.0/   the TFDS dataset (records, dataset_info.json, clips.json)
    <out>/build_report.json        examples written per split, inputs skipped per reason
    <out>/.staging/                per-item results while the build runs (removed at the end)

Running the same command again after an interruption (Ctrl-C, a killed VM) resumes: items
already staged are not decoded again. The result does not depend on the number of workers
or on interruptions: records are written in key order from the staged files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from talkjax.errors import TalkjaxError
from talkjax_datasets.real.items import SPLITS, Item, Skip
from talkjax_datasets.real.options import BuildOptions
from talkjax_datasets.real.staging import Staging, item_name

SAMPLE_RATE = 16000
STAGING = ".staging"
REPORT = "build_report.json"


def _work(args):
  """Worker: process one item and stage its result; returns (key, 'example' | reason)."""
  from talkjax_datasets.real.process import process
  item, options, staging_dir = args
  staging = Staging(staging_dir)
  result = process(item, options)
  if isinstance(result, Skip):
    staging.write_skip(item.key, result)
    return item.key, result.reason
  example, stats = result
  meta = {"key": item.key, "split": item.split, "identity": item.identity,
          "source": item.describe(), "labels": dict(item.labels), "stats": stats,
          "frames": len(example["frames"]), "emotion": item.emotion,
          "intensity": item.intensity}
  staging.write_example(item.key, example, meta)
  return item.key, "example"


def _prepare_out(out: Path, name: str, settings: dict, overwrite: bool) -> Staging:
  staging = Staging(out / STAGING)
  if out.exists() and not out.is_dir():
    raise TalkjaxError("the output path exists and is not a folder", path=out,
                       fix="pick another --out")
  if overwrite and out.exists():
    shutil.rmtree(out)
  if out.exists() and any(out.iterdir()):
    previous = staging.settings()
    if previous is None:
      if (out / REPORT).exists():
        raise TalkjaxError("a finished build is already here", path=out,
                           fix="pass --overwrite to rebuild it, or pick another --out")
      raise TalkjaxError("the output folder is not empty and holds no unfinished build",
                         path=out, fix="pick an empty --out (or pass --overwrite to clear it)")
    if previous != settings:
      changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
      raise TalkjaxError(f"an unfinished {previous.get('dataset')} build with other settings is "
                         f"here (differs in: {', '.join(changed)})", path=out,
                         fix="rerun with the same arguments to resume it, or pass --overwrite")
    # A TFDS write cut short leaves its own partial folder; it is redone from the staging.
    shutil.rmtree(out / name, ignore_errors=True)
  staging.create(settings)
  return staging


def _start_pool(workers):
  # fork is fastest; once JAX is loaded its threads make fork unsafe, so spawn instead.
  method = "spawn" if "jax" in sys.modules else "fork"
  return multiprocessing.get_context(method).Pool(workers)


def _run_items(items, options, staging: Staging, workers: int, label: str) -> None:
  from tqdm import tqdm
  finished = staging.done()
  pending = [i for i in items if item_name(i.key) not in finished]
  counts = Counter()
  bar = tqdm(total=len(items), initial=len(items) - len(pending), unit="clip",
             desc=f"{label}: decode, crop, encode", file=sys.stderr, dynamic_ncols=True)
  if len(items) > len(pending):
    print(f"resuming: {len(items) - len(pending)} of {len(items)} items were done before",
          file=sys.stderr)
  jobs = [(item, options, str(staging.folder)) for item in pending]
  pool = _start_pool(workers) if workers > 1 and len(jobs) > 1 else None
  try:
    results = pool.imap_unordered(_work, jobs) if pool else map(_work, jobs)
    for _, outcome in results:
      counts["written" if outcome == "example" else "skipped"] += 1
      bar.update(1)
      bar.set_postfix(written=counts["written"], skipped=counts["skipped"])
  finally:
    bar.close()
    if pool is not None:
      pool.terminate()


def _plan(items, staging: Staging, segment_frames: int):
  """Per split: the written clips in key order with their first record, person and labels
  (clips.json, and what the TFDS builder writes from)."""
  finished = staging.done()
  metas = [staging.meta(i.key) for i in sorted(items, key=lambda i: i.key)
           if finished.get(item_name(i.key)) == "example"]
  identities = sorted({m["identity"] for m in metas})
  number = {name: n for n, name in enumerate(identities)}
  index = {s: [] for s in SPLITS}
  records = Counter()
  for meta in metas:
    split, frames = meta["split"], meta["frames"]
    index[split].append({"key": meta["key"], "frames": frames, "record": records[split],
                         "identity": number[meta["identity"]], "speaker": meta["identity"],
                         "source": meta["source"], "labels": meta["labels"],
                         "emotion": meta["emotion"], "intensity": meta["intensity"],
                         "stats": meta["stats"]})
    records[split] += math.ceil(frames / segment_frames)
  return index, identities


def build(builder_cls, items: list[Item], scan_skips: list[Skip], out, options: BuildOptions, *,
          raw, workers: int | None = None, overwrite: bool = False, dyadic: bool = False,
          extra: dict | None = None, keep_staging: bool = False) -> Path:
  """Build a real dataset from a layout's items; returns the TFDS dataset folder."""
  import os
  options.validate()
  name = builder_cls.name
  out = Path(out).expanduser()
  keys = Counter(i.key for i in items)
  twice = [k for k, n in keys.items() if n > 1]
  if twice:
    raise TalkjaxError(f"{len(twice)} inputs map to the same example key (e.g. {twice[0]!r})",
                       path=raw, fix="each clip must appear once in the raw folder")
  if not items:
    raise TalkjaxError(f"no {name} clips found ({len(scan_skips)} inputs skipped while reading "
                       "the layout)", path=raw,
                       fix=f"check --raw points at the {name} folder (see datasets/{name}/README.md)")
  # The digest of every item's key, split and person: a resume after the layout's answer
  # changed (an edited split file, new videos) is refused instead of mixing two plans.
  digest = hashlib.sha1("\n".join(f"{i.key}|{i.split}|{i.identity}" for i in
                                   sorted(items, key=lambda i: i.key)).encode()).hexdigest()
  settings = {"dataset": name, "raw": str(Path(raw).resolve()), "options": dataclasses.asdict(options),
              "dyadic": dyadic, "items": len(items), "items_digest": digest, **(extra or {})}
  staging = _prepare_out(out, name, settings, overwrite)
  start = time.perf_counter()
  _run_items(items, options, staging, workers or os.cpu_count() or 1, name)

  index, identities = _plan(items, staging, options.segment_frames)
  if not any(index.values()):
    skips = [staging.skip(i.key) for i in items]
    reasons = Counter(s["reason"] for s in skips)
    raise TalkjaxError(f"every {name} clip was skipped ({dict(reasons)}); e.g. "
                       f"{skips[0]['source']}: {skips[0]['detail']}", path=raw,
                       fix="see the reasons; `--help` lists the settings that decide them")
  metadata = {"source": name, "fps": options.fps, "sample_rate": SAMPLE_RATE,
              "resolution": options.resolution, "image_format": options.image_format,
              "segment_frames": options.segment_frames, "dyadic": dyadic, "crop": options.crop,
              "framing": [options.framing_scale, options.framing_center_y],
              "identities": identities, "format": "talkjax.recorded/1"}
  from talkjax_datasets.real.tfds_builder import RecordedConfig
  from talkjax_datasets.tfds_spill import spill_without_tensorflow
  import tensorflow_datasets as tfds
  config = RecordedConfig(name=options.config_name(), plan=index, staging=str(staging.folder),
                          dyadic=dyadic, metadata=metadata)
  builder = builder_cls(config=config, data_dir=str(out), file_format="array_record")
  print(f"{name}: writing array_record ...", file=sys.stderr)
  with spill_without_tensorflow():
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  path = Path(builder.data_dir)
  (path / "clips.json").write_text(json.dumps({"splits": index, "identities": identities}))
  report = _report(name, raw, items, scan_skips, staging, index, options, time.perf_counter() - start)
  report["settings"] = extra or {}
  (out / REPORT).write_text(json.dumps(report, indent=1))
  shutil.rmtree(out / "downloads", ignore_errors=True)
  if not keep_staging:
    shutil.rmtree(staging.folder, ignore_errors=True)
  print(summary(report, path))
  return path


def _report(name, raw, items, scan_skips, staging, index, options, seconds) -> dict:
  finished = staging.done()
  skips = [s.as_dict() for s in scan_skips]
  skips += [{k: v for k, v in staging.skip(i.key).items() if k != "key"} for i in items
            if finished.get(item_name(i.key)) == "skip"]
  frames = {s: sum(c["frames"] for c in clips) for s, clips in index.items()}
  source_seconds = sum(c["stats"]["seconds"] for clips in index.values() for c in clips)
  return {
      "dataset": name, "raw": str(raw), "options": dataclasses.asdict(options),
      "written": {s: len(c) for s, c in index.items()},
      "frames": frames, "hours": round(sum(frames.values()) / options.fps / 3600, 4),
      "identities": {s: len({c["speaker"] for c in clips}) for s, clips in index.items()},
      "inputs": len(items) + len(scan_skips),
      "skipped": dict(sorted(Counter(s["reason"] for s in skips).items())),
      "skips": sorted(skips, key=lambda s: (s["reason"], s["source"])),
      "build_seconds": round(seconds, 2),
      "source_minutes_per_minute": round(source_seconds / max(seconds, 1e-9), 3),
  }


def summary(report: dict, path) -> str:
  w = report["written"]
  lines = [f"{report['dataset']}: {sum(w.values())} clips written (train {w['train']}, "
           f"val {w['val']}, test {w['test']}; {report['hours'] * 60:.1f} min of video) "
           f"-> {path}"]
  skipped = report["skipped"]
  if skipped:
    lines.append(f"skipped {sum(skipped.values())} of {report['inputs']} inputs: " +
                 ", ".join(f"{reason} {n}" for reason, n in skipped.items()))
    for s in report["skips"][:5]:
      detail = s["detail"].removeprefix(s["source"] + ": ")   # the path is said once
      lines.append(f"  {s['reason']}: {s['source']}" + (f" ({detail})" if detail else ""))
    if len(report["skips"]) > 5:
      lines.append(f"  ... {len(report['skips']) - 5} more in build_report.json")
  else:
    lines.append(f"skipped none of {report['inputs']} inputs")
  return "\n".join(lines)
