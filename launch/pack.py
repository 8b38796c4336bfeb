"""The project's code as one .tar.gz for the hosts: the files git tracks plus the new ones it
does not ignore (uncommitted edits included, so a host runs what you see), or, outside a git
checkout, every file but virtual environments, caches and run folders.

  python -m talkjax_launch.pack OUT.tar.gz [PROJECT_DIR]
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tarfile

SKIP = {".git", ".venv", ".ci-venv", "__pycache__", ".pytest_cache", "runs", "launch-logs",
        "test-artefacts", ".offline"}


def files(root: pathlib.Path) -> list[str]:
  try:
    out = subprocess.run(["git", "-C", str(root), "ls-files", "-co", "--exclude-standard", "-z"],
                         capture_output=True, check=True)
    return sorted(f for f in out.stdout.decode().split("\0") if f and (root / f).is_file())
  except (OSError, subprocess.CalledProcessError):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and not SKIP & set(p.relative_to(root).parts))


def pack(out: pathlib.Path, root: pathlib.Path) -> int:
  out.parent.mkdir(parents=True, exist_ok=True)
  names = files(root)
  with tarfile.open(out, "w:gz") as tar:
    for name in names:
      tar.add(root / name, arcname=name)
  return len(names)


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if not 1 <= len(argv) <= 2:
    print(__doc__, file=sys.stderr)
    return 2
  root = pathlib.Path(argv[1]) if len(argv) == 2 else pathlib.Path(__file__).resolve().parent.parent
  count = pack(pathlib.Path(argv[0]), root)
  print(f"packed {count} files of {root} into {argv[0]}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
