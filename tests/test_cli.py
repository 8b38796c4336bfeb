import subprocess
import sys

import pytest

from talkjax import cli


def test_console_script_reports_version():
  out = subprocess.run(["talkjax", "--version"], capture_output=True, text=True, check=True)
  import talkjax
  assert out.stdout.strip() == f"talkjax {talkjax.__version__}"


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_subcommand_help_teaches_with_an_example(command, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main([command, "--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  assert "examples:" in out and f"talkjax {command}" in out


def test_top_level_help_lists_every_command(capsys):
  with pytest.raises(SystemExit):
    cli.main(["--help"])
  out = capsys.readouterr().out
  for command in cli.COMMANDS:
    assert command in out


def test_dry_run_prints_config_and_parameter_count(capsys):
  assert cli.main(["train", "--config", "testbed/tiny", "--dry-run", "--set", "train.steps=3",
                   "model.layers=1"]) == 0
  out = capsys.readouterr().out
  assert "train.steps = 3" in out
  count = int(out.split("parameters: ")[1].split()[0].replace(",", ""))
  # embed_in (8*32+32) + block (3*(32*32+32) + 32*32+32 + 32*64+64 + 64*32+32) + head (32*8+8)
  trainable = (8 * 32 + 32) + (4 * (32 * 32 + 32) + 32 * 64 + 64 + 64 * 32 + 32) + (32 * 8 + 8)
  frozen = 2 * 8                 # the input statistics: mean and std of 8 features
  assert count == trainable + frozen
  assert f"trainable {trainable:,}, frozen {frozen:,}" in out


def test_user_error_is_one_line_with_exit_2(capsys):
  assert cli.main(["train", "--config", "testbed/tiny", "--dry-run", "--set", "train.stepz=1"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert "unknown config key 'train.stepz'" in err and "train.steps" in err and "tiny.py" in err


def test_debug_shows_the_traceback():
  proc = subprocess.run([sys.executable, "-m", "talkjax.cli", "--debug", "train", "--config",
                         "testbed/nope", "--dry-run"], capture_output=True, text=True)
  assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr
  proc = subprocess.run([sys.executable, "-m", "talkjax.cli", "train", "--config",
                         "testbed/nope", "--dry-run"], capture_output=True, text=True)
  assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_second_run_reuses_the_persistent_compilation_cache(tmp_path):
  import os
  cache = tmp_path / "xla"
  env = {**os.environ, "TALKJAX_COMPILATION_CACHE": str(cache), "XLA_FLAGS": "",
         "JAX_PLATFORMS": "cpu"}
  cmd = ["talkjax", "train", "--config", "testbed/tiny", "--set", "train.steps=2",
         "checkpoint.every=2"]
  subprocess.run(cmd + ["--workdir", str(tmp_path / "a")], env=env, check=True, capture_output=True)
  entries = sorted(p.name for p in cache.iterdir())
  assert entries, "the first run wrote no compiled programs"
  subprocess.run(cmd + ["--workdir", str(tmp_path / "b")], env=env, check=True, capture_output=True)
  assert sorted(p.name for p in cache.iterdir()) == entries  # all hits: nothing new compiled
