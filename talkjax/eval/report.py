"""Reports of `talkjax eval model`: JSON (metrics and per-frame curves), a Markdown table for a
README or paper, PNG plots.

The table puts every metric next to ground truth's value on the same clips, with 95 %
intervals over clips, the pass mark, and (when controls were scored) what the mark says
of a still portrait, ground truth 2 frames late, the mouth halved and another person: a
reader sees at once what each mark rejects.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

CONTROL_TITLES = {"still": "still portrait", "lagged": "2 frames late",
                  "half_mouth": "half mouth", "other_identity": "other person"}
ROLLING_S = 1.0   # window of the per-frame lip-sync curve
ZOOM_S = 6.0      # mouth and lip-sync panels show the first seconds: 20 s of syllables blur


def _fmt(x: float) -> str:
  return f"{x:.3f}"


def _with_interval(value: float, interval) -> str:
  lo, hi = interval
  if lo == hi:   # one clip: no interval to show
    return _fmt(value)
  return f"{_fmt(value)} [{_fmt(lo)}, {_fmt(hi)}]"


def markdown(result: dict) -> str:
  """The comparison (and the standard suite, if scored) as Markdown tables."""
  comparison, controls = result["comparison"], result.get("controls", {})
  head = ["metric", "ground truth", "generated", "compared", "pass mark", "verdict"]
  head += [CONTROL_TITLES[c] for c in controls]
  n = comparison["clips"]
  lines = [f"SynthTalk probe, {n} held-out clip{'s' if n > 1 else ''}"
           + ("; means with 95 % bootstrap intervals over clips." if n > 1 else ".")]
  if result.get("redrawn"):
    lines.append(f"Generated: {result['redrawn']}.")
  lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for key, row in comparison["metrics"].items():
    cells = [row["name"], _with_interval(row["truth"]["mean"], row["truth"]["interval"]),
             _with_interval(row["generated"]["mean"], row["generated"]["interval"]),
             f"{_with_interval(row['value'], row['interval'])} ({row['what']})", row["mark"],
             "pass" if row["pass"] else "**FAIL**"]
    for name in controls:
      c = controls[name]["metrics"].get(key)
      cells.append("" if c is None else f"{_fmt(c['value'])} {'pass' if c['pass'] else 'fail'}")
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", f"Overall: {'meets every mark' if comparison['passes'] else 'misses a mark'}."]
  if result.get("suite"):
    lines += ["", suite_markdown(result["suite"])]
  return "\n".join(lines) + "\n"


def suite_markdown(suite: dict) -> str:
  still = any("still" in row for row in suite.values())
  head = ["standard metric", "ground truth", "generated"] + (["still portrait"] if still else [])
  lines = ["| " + " | ".join(head + ["protocol"]) + " |", "|" + "---|" * (len(head) + 1)]
  cell = lambda v: "n/a" if v is None else _fmt(v)
  for name, row in suite.items():
    cells = [name, cell(row.get("truth")), cell(row["generated"])]
    cells += [cell(row.get("still"))] if still else []
    lines.append("| " + " | ".join(cells + [row.get("protocol", "")]) + " |")
  return "\n".join(lines)


def rolling_sync(mouth: np.ndarray, implied: np.ndarray, fps: float) -> np.ndarray:
  """Per-frame lip-sync: correlation at offset 0 over a ROLLING_S window centred on each frame."""
  half = max(2, int(round(ROLLING_S * fps / 2)))
  out = np.zeros(len(mouth), np.float32)
  for t in range(len(mouth)):
    a, b = mouth[max(0, t - half):t + half + 1], implied[max(0, t - half):t + half + 1]
    a, b = a - a.mean(), b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    out[t] = (a * b).sum() / d if d > 1e-9 else 0.0
  return out


def plot_curves(result: dict, path) -> pathlib.Path:
  """PNG: for each kept clip, mouth opening (generated, ground truth, what the audio implies),
  identity similarity to the portrait, and per-frame lip-sync, over time."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  curves, fps = result["curves"], result["fps"]
  columns = 4 if curves and "syncnet" in curves[0] else 3
  fig, axes = plt.subplots(len(curves), columns, figsize=(5 * columns, 3.2 * len(curves)),
                           squeeze=False)
  for row, clip in zip(axes, curves):
    g, t = clip["generated"], clip["truth"]
    time = np.arange(len(g["mouth_open"])) / fps
    zoom = time < ZOOM_S
    row[0].plot(time[zoom], t["mouth_open"][zoom], label="ground truth", color="k", lw=1)
    row[0].plot(time[zoom], g["mouth_open"][zoom], label="generated", color="tab:red", lw=1)
    row[0].plot(time[zoom], t["implied_mouth"][zoom], label="implied by audio",
                color="tab:blue", lw=0.7, ls="--")
    row[0].set(title=f"clip {clip['clip']}: mouth opening", xlabel="s", ylim=(-0.02, 1.02))
    row[1].plot(time, t["identity"], color="k", lw=1, label="ground truth")
    row[1].plot(time, g["identity"], color="tab:red", lw=1, label="generated")
    row[1].set(title="identity: cos. to the portrait", xlabel="s")
    for name, c, color in (("ground truth", t, "k"), ("generated", g, "tab:red")):
      sync = rolling_sync(c["mouth_open"], c["implied_mouth"], fps)
      row[2].plot(time[zoom], sync[zoom], color=color, lw=1, label=name)
    row[2].set(title=f"lip-sync over {ROLLING_S:g} s windows", xlabel="s", ylim=(-1, 1))
    if columns == 4:   # SyncNet's per-window confidence (one value per 5-frame window)
      for name, key, color in (("ground truth", "truth", "k"), ("generated", "generated", "tab:red")):
        conf = np.asarray(clip["syncnet"][key])
        row[3].plot(np.arange(len(conf))[:int(ZOOM_S * fps)] / fps, conf[:int(ZOOM_S * fps)],
                    color=color, lw=1, label=name)
      row[3].set(title="SyncNet confidence per window", xlabel="s")
    for ax in row:
      ax.legend(fontsize=7, loc="lower right")
  fig.tight_layout()
  path = pathlib.Path(path)
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return path


def curves_json(result: dict) -> dict:
  """The plotted per-frame curves as numbers (identity drift, mouth opening, lip-sync over
  time), so that a curve can be compared or re-plotted without reading it off the PNG."""
  numbers = lambda curves: {k: np.round(np.asarray(v, np.float64), 4).tolist()
                            for k, v in curves.items()}
  clips = []
  for clip in result["curves"]:
    row = {"clip": clip["clip"]}
    for side in ("generated", "truth"):
      c = clip[side]
      row[side] = numbers({**c, "lipsync_rolling": rolling_sync(
          c["mouth_open"], c["implied_mouth"], result["fps"])})
    if "syncnet" in clip:
      row["syncnet"] = numbers(clip["syncnet"])
    clips.append(row)
  return {"fps": result["fps"], "lipsync_window_s": ROLLING_S, "clips": clips}


def write(result: dict, out_dir) -> dict[str, pathlib.Path]:
  """metrics.json (all but the curves), curves.json (the per-frame curves), table.md and
  curves.png in `out_dir`."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  files = {"json": out / "metrics.json", "curves": out / "curves.json",
           "markdown": out / "table.md", "plot": out / "curves.png"}
  files["json"].write_text(json.dumps(to_json(result), indent=2) + "\n")
  files["curves"].write_text(json.dumps(curves_json(result)) + "\n")
  files["markdown"].write_text(markdown(result))
  plot_curves(result, files["plot"])
  return files


def to_json(result: dict) -> dict:
  return {k: v for k, v in result.items() if k != "curves"}
