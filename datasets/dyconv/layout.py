"""The DyConv layout: two-person conversations, one camera (and optionally one close-talk
microphone) per participant (datasets/dyconv/README.md).

    RAW/conversations.csv                  optional: conversation,split
    RAW/{conversation}/{participant}.mp4   each participant's camera (exactly 2)
    RAW/{conversation}/{participant}.wav   optional: that participant's own track
    RAW/{conversation}/turns.csv           optional: participant,start,end (seconds)

Every conversation gives two examples, one per agent: the agent's video, the agent's own
track as `audio` and the other participant's track as `partner_audio`, both on the agent's
frames. A conversation's two examples always share a split (the partner's voice of one is
the agent's voice of the other), so splits are drawn per conversation.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from talkjax.errors import TalkjaxError
from talkjax_datasets.real.items import SPLITS, Item, Media, Skip, read_split_file, split_by_hash

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
AUDIO_SUFFIXES = (".wav", ".flac", ".m4a")   # first found wins
CONVERSATIONS = "conversations.csv"
TURNS = "turns.csv"


def scan(raw, *, seed: int = 0, val: float = 0.05, test: float = 0.05, split_file=None):
  """-> (items, skips) for every conversation folder in RAW."""
  raw = Path(raw)
  if not raw.is_dir():
    raise TalkjaxError("the raw folder does not exist", path=raw,
                       fix="pass the DyConv folder (one sub-folder per conversation)")
  folders = {p.name: p for p in sorted(raw.iterdir()) if p.is_dir() and not p.name.startswith(".")}
  if split_file:
    if not Path(split_file).is_file():
      raise TalkjaxError("the split file does not exist", path=split_file,
                         fix="pass a file of `CONVERSATION SPLIT` lines, or leave it out")
    chosen = read_split_file(split_file)
  elif (raw / CONVERSATIONS).is_file():
    chosen = read_conversations(raw / CONVERSATIONS)
  else:
    chosen = None
  # Hashing every folder name (broken ones too) keeps a conversation's split the same when
  # another one is repaired or added.
  by_hash = split_by_hash(list(folders), seed=seed, val=val, test=test) if chosen is None else None
  items, skips = [], []
  if chosen is not None:
    source = split_file or raw / CONVERSATIONS
    for name in sorted(set(chosen) - set(folders)):
      skips.append(Skip(str(raw / name), "missing video",
                        f"{source} lists conversation {name!r}, which has no folder"))
  for name, folder in folders.items():
    if chosen is not None and name not in chosen:
      continue   # not listed: left out on purpose
    split = chosen[name] if chosen is not None else by_hash[name]
    found = conversation(folder, split)
    if isinstance(found, Skip):
      skips.append(found)
    else:
      items.extend(found)
  return items, skips


def read_conversations(path) -> dict:
  """conversation -> split from a CSV whose header names `conversation` and `split` (other
  columns are ignored; blank lines and # comments are skipped)."""
  try:
    with open(path, newline="") as f:
      rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), 1)
              if any(c.strip() for c in row) and not row[0].lstrip().startswith("#")]
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise TalkjaxError(f"cannot be read as CSV ({e})", path=path,
                       fix="write it as text: a `conversation,split` header, then one row "
                           "per conversation") from e
  header = rows[0][1] if rows else []
  if "conversation" not in header or "split" not in header:
    raise TalkjaxError(f"the header names {header}, not `conversation,split`", path=path,
                       fix="start the file with the line `conversation,split`")
  at_name, at_split = header.index("conversation"), header.index("split")
  out = {}
  for number, row in rows[1:]:
    name = row[at_name] if at_name < len(row) else ""
    split = row[at_split] if at_split < len(row) else ""
    if not name or split not in SPLITS:
      raise TalkjaxError(f"line {number}: {name!r},{split!r} is not a conversation and one "
                         f"of {SPLITS}", path=path,
                         fix="write one `conversation,split` pair per line")
    if out.get(name, split) != split:
      raise TalkjaxError(f"line {number}: conversation {name!r} is listed in two splits",
                         path=path, fix="list each conversation once")
    out[name] = split
  return out


def conversation(folder: Path, split: str):
  """The two examples of one conversation folder, or a Skip saying why it has none."""
  videos = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in VIDEO_SUFFIXES)
  stems = [p.stem for p in videos]
  if len(videos) != 2 or len(set(stems)) != 2:
    listed = ", ".join(p.name for p in videos) or "none"
    return Skip(str(folder), "bad annotation",
                f"{len(videos)} participant videos ({listed}); a conversation needs exactly 2 "
                "with different names")
  turns = None
  if (folder / TURNS).is_file():
    turns = read_turns(folder / TURNS, stems)
    if isinstance(turns, Skip):
      return turns
  tracks = {p.stem: next((p.with_suffix(s) for s in AUDIO_SUFFIXES
                          if p.with_suffix(s).is_file()), None) for p in videos}
  items = []
  for agent, partner in ((videos[0], videos[1]), (videos[1], videos[0])):
    own, other = tracks[agent.stem], tracks[partner.stem]
    items.append(Item(
        key=f"{folder.name}/{agent.stem}", split=split,
        # Participants are named by seat or role (ViCo: speaker/listener), unique only
        # within their conversation; see README.md.
        identity=f"{folder.name}/{agent.stem}",
        video=Media(str(agent)),
        audio=Media(str(own)) if own else None,
        # Without a close-talk track the partner's voice is the sound of its own camera.
        partner_audio=Media(str(other or partner)),
        turns=None if turns is None else turns[agent.stem],
        labels=(("conversation", folder.name), ("agent", agent.stem),
                ("partner", partner.stem))))
  return items


def read_turns(path: Path, participants):
  """participant -> sorted speaking intervals (possibly none) from turns.csv, or a Skip
  naming the first line that cannot be read."""
  out = {p: [] for p in participants}

  def bad(number, why):
    return Skip(str(path), "bad annotation", f"line {number}: {why}")

  try:
    with open(path, newline="") as f:
      rows = list(csv.reader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    return Skip(str(path), "bad annotation", f"cannot be read as CSV ({e})")
  first = True
  for number, row in enumerate(rows, 1):
    row = [c.strip() for c in row]
    if not any(row) or row[0].startswith("#"):
      continue
    if first and [c.lower() for c in row] == ["participant", "start", "end"]:
      first = False
      continue
    first = False
    if len(row) != 3:
      return bad(number, f"{len(row)} fields, not `participant,start,end`")
    who, start, end = row
    if who not in out:
      return bad(number, f"participant {who!r} has no video here (have {sorted(out)})")
    try:
      start, end = float(start), float(end)
    except ValueError:
      return bad(number, f"start/end {row[1]!r}, {row[2]!r} are not numbers of seconds")
    if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
      return bad(number, f"interval {start:g}-{end:g} s is not 0 <= start < end")
    out[who].append((start, end))
  return {who: tuple(sorted(spans)) for who, spans in out.items()}
