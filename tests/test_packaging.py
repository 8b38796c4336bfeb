"""Every package folder must be listed in pyproject.toml (the list is explicit because the
repository's top-level folders are installed under talkjax_* names)."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
INSTALLED_AS = {"talkjax": "talkjax", "datasets": "talkjax_datasets",
                "experiments": "talkjax_experiments", "launch": "talkjax_launch"}


def test_every_package_folder_is_installed():
  pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
  listed = set(pyproject["tool"]["setuptools"]["packages"])
  found = set()
  for folder, name in INSTALLED_AS.items():
    for init in (ROOT / folder).rglob("__init__.py"):
      rel = init.parent.relative_to(ROOT / folder).parts
      found.add(".".join((name,) + rel))
  assert found == listed, f"add to / remove from pyproject.toml: {sorted(found ^ listed)}"
