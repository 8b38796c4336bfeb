"""`talkjax launch tpu` / `gpu`: golden dry runs at two topologies each, and the clear errors
(inconsistent requests, a missing cloud CLI, a bucket that does not exist, an unset secret).

The goldens live in tests/launch/golden/; after a deliberate change, rewrite them with
TALKJAX_UPDATE_GOLDEN=1 pytest tests/launch and read the diff."""

import os
import pathlib
import stat
import subprocess
import sys
import tarfile

import pytest

from talkjax.cli import main
from talkjax_launch import cloud, topologies

GOLDEN = pathlib.Path(__file__).parent / "golden"
CASES = {
    "tpu_v5p-64_memo": ["tpu", "--config", "memo/paper_512_stage2", "--accelerator", "v5p-64",
                        "--zone", "us-east5-a", "--project", "my-project", "--name", "memo-s2",
                        "--workdir", "gs://my-bucket/runs/memo-s2", "--env", "WANDB_API_KEY",
                        "--env", "WANDB_PROJECT=talkjax", "--set",
                        "init_from.workdir=gs://my-bucket/runs/memo-warmup"],
    "tpu_v6e-8_ifmdm": ["tpu", "--config", "ifmdm/hdtf_512_stage2", "--accelerator", "v6e-8",
                        "--zone", "europe-west4-a", "--name", "ifmdm-s2", "--spot",
                        "--workdir", "runs/ifmdm-s2"],
    "gpu_2x8_ifmdm": ["gpu", "--config", "ifmdm/hdtf_512_stage2", "--nodes", "2", "--gpus",
                      "H100:8", "--cloud", "gcp", "--name", "ifmdm-s2", "--workdir",
                      "gs://my-bucket/runs/ifmdm-s2", "--env", "WANDB_API_KEY"],
    "gpu_4x8_memo": ["gpu", "--config", "memo/paper_512_stage2", "--nodes", "4", "--gpus",
                     "A100-80GB:8", "--name", "memo-s2-gpu", "--spot", "--workdir",
                     "s3://my-bucket/memo-s2", "--set", "data.batch_size=32"],
}


def dry_run(capsys, argv):
  code = main(["launch", *argv, "--dry-run"])
  out, err = capsys.readouterr()
  assert code == 0, err
  return out.replace(str(cloud.PROJECT), "<project>")


@pytest.mark.parametrize("case", sorted(CASES))
def test_dry_runs_match_their_golden_plans(case, capsys):
  out = dry_run(capsys, CASES[case])
  golden = GOLDEN / f"{case}.txt"
  if os.environ.get("TALKJAX_UPDATE_GOLDEN") == "1":
    golden.parent.mkdir(exist_ok=True)
    golden.write_text(out)
  assert out == golden.read_text(), f"the plan changed; see {golden}"


def test_what_the_plans_promise(capsys):
  """The properties the goldens are read for, checked on their own."""
  tpu = dry_run(capsys, CASES["tpu_v5p-64_memo"])
  assert "32 devices, 8 host(s) x 4" in tpu and "data=1 fsdp=8 tensor=4" in tpu
  assert "8 by the Cloud TPU tables; then on each host {host} of 0..7 at once" in tpu
  assert "WANDB_API_KEY=<WANDB_API_KEY from your environment>" in tpu
  assert "init_from.workdir=/mnt/talkjax/my-bucket/runs/memo-warmup" in tpu
  assert tpu.index("buckets describe") < tpu.index("queued-resources create")
  gpu = dry_run(capsys, CASES["gpu_4x8_memo"])
  assert "num_nodes: 4" in gpu and "accelerators: A100-80GB:8" in gpu and "use_spot: true" in gpu
  assert "data=4 fsdp=8 tensor=1  (the default" in gpu and "source: s3://my-bucket" in gpu
  single = dry_run(capsys, CASES["tpu_v6e-8_ifmdm"])
  assert "(on the host's own disk: it goes with the machine" in single and "TALKJAX_DISTRIBUTED" not in single


def test_secrets_never_reach_the_plan_or_the_task_file(capsys, monkeypatch, tmp_path):
  monkeypatch.setenv("WANDB_API_KEY", "s3cr3t-value")
  for case in ("tpu_v5p-64_memo", "gpu_2x8_ifmdm"):
    assert "s3cr3t" not in dry_run(capsys, CASES[case])


@pytest.mark.parametrize("argv, words", [
    (["tpu", "--accelerator", "v5p-64", "--mesh", "data=1", "fsdp=64", "tensor=1"],
     "needs 64 devices but 32 are present"),
    (["tpu", "--accelerator", "v5p-64", "--mesh", "data=3", "fsdp=-1"], "32 devices cannot be split"),
    (["tpu", "--accelerator", "v5p-65"], "multiple of 8 TensorCores"),
    (["tpu", "--accelerator", "v7x-8"], "unknown TPU accelerator type"),
    (["tpu", "--accelerator", "v5p-64", "--workdir", "runs/local"], "spans 8 hosts"),
    (["tpu", "--accelerator", "v5p-64", "--workdir", "s3://b/x"], "mounts gs:// buckets"),
    (["tpu", "--accelerator", "v5p-256", "--set", "data.batch_size=100"],
     "global batch of 100 does not split"),
    (["gpu", "--gpus", "H100"], "TYPE:COUNT"),
    (["gpu", "--nodes", "0", "--gpus", "H100:8"], "is not a cluster"),
])
def test_inconsistent_requests_are_refused_before_anything_runs(argv, words, capsys):
  base = {"--config": "ifmdm/hdtf_512_stage2", "--name": "run1", "--workdir": "gs://b/run1",
          "--zone": "us-east5-a"}
  given = [a for a in argv if a.startswith("--")]
  extra = [x for k, v in base.items() if k not in given and not (k == "--zone" and argv[0] == "gpu")
           for x in (k, v)]
  code = main(["launch", *argv, *extra, "--dry-run"])
  err = capsys.readouterr().err
  assert code == 2 and words in err, err
  assert "Traceback" not in err


def test_a_missing_zone_and_a_config_outside_the_project(capsys, tmp_path):
  assert main(["launch", "tpu", "--config", "ifmdm/hdtf_512_stage2", "--accelerator", "v5p-8",
               "--name", "a", "--workdir", "gs://b/a", "--dry-run"]) == 2
  assert "needs --zone" in capsys.readouterr().err
  outside = tmp_path / "mine.py"
  outside.write_text((cloud.PROJECT / "experiments/testbed/tiny.py").read_text())
  assert main(["launch", "tpu", "--config", str(outside), "--accelerator", "v5p-8", "--zone", "z",
               "--name", "a", "--workdir", "gs://b/a", "--dry-run"]) == 2
  assert "outside the project" in capsys.readouterr().err


def _fake_gcloud(folder: pathlib.Path) -> pathlib.Path:
  """A stand-in for the Google Cloud CLI (which cannot reach a cloud here): it records every
  call and answers the bucket check as gcloud does for a missing bucket."""
  fake = folder / "gcloud"
  fake.write_text("#!/bin/sh\n"
                  f'echo "$@" >> "{folder}/calls.txt"\n'
                  'if [ "$1 $2 $3" = "storage buckets describe" ]; then\n'
                  '  echo "ERROR: (gcloud.storage.buckets.describe) $4 not found: 404." >&2; exit 1\n'
                  "fi\nexit 0\n")
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  return fake


def _launch(argv, path, tmp_path):
  env = {**os.environ, "PATH": path}
  return subprocess.run([sys.executable, "-m", "talkjax.cli", "launch", *argv, "--log-dir",
                         str(tmp_path / "logs")], capture_output=True, text=True, env=env,
                        timeout=120)


TPU_RUN = ["tpu", "--config", "ifmdm/hdtf_512_stage2", "--accelerator", "v5p-8", "--zone", "z",
           "--name", "run1", "--workdir", "gs://no-such-bucket/run1"]


def test_a_bucket_that_does_not_exist_stops_the_launch_before_any_slice(tmp_path):
  _fake_gcloud(tmp_path)
  proc = _launch(TPU_RUN, f"{tmp_path}:{os.environ['PATH']}", tmp_path)
  assert proc.returncode == 2, proc.stderr
  assert "the bucket gs://no-such-bucket does not exist" in proc.stderr
  calls = (tmp_path / "calls.txt").read_text().splitlines()
  assert calls == ["storage buckets describe gs://no-such-bucket --format=value(name)"]


def test_a_missing_cloud_cli_or_secret_is_a_clear_error(tmp_path):
  bare = str(pathlib.Path(sys.executable).parent)          # python, but no gcloud, no sky
  proc = _launch(TPU_RUN, bare, tmp_path)
  assert proc.returncode == 2 and "the 'gcloud' command is not installed" in proc.stderr
  proc = _launch(["gpu", "--config", "ifmdm/hdtf_512_stage2", "--name", "run1", "--workdir",
                  "gs://b/run1"], bare, tmp_path)
  assert proc.returncode == 2 and "the 'sky' command is not installed" in proc.stderr
  _fake_gcloud(tmp_path)
  env_missing = TPU_RUN + ["--env", "TALKJAX_TEST_UNSET_SECRET"]
  proc = _launch(env_missing, f"{tmp_path}:{os.environ['PATH']}", tmp_path)
  assert proc.returncode == 2 and "TALKJAX_TEST_UNSET_SECRET: not set" in proc.stderr
  assert not (tmp_path / "calls.txt").exists()                # checked before any call


def test_the_archive_holds_what_git_would_commit(tmp_path):
  repo = tmp_path / "project"
  (repo / "pkg").mkdir(parents=True)
  (repo / "pkg" / "a.py").write_text("a = 1\n")
  (repo / "new.py").write_text("b = 2\n")                      # not committed, not ignored
  (repo / ".venv").mkdir()
  (repo / ".venv" / "big.bin").write_text("x")
  (repo / ".gitignore").write_text(".venv/\n")
  subprocess.run(["git", "init", "-q", str(repo)], check=True)
  subprocess.run(["git", "-C", str(repo), "add", "pkg", ".gitignore"], check=True)
  from talkjax_launch import pack
  assert pack.main([str(tmp_path / "src.tar.gz"), str(repo)]) == 0
  with tarfile.open(tmp_path / "src.tar.gz") as tar:
    assert sorted(tar.getnames()) == [".gitignore", "new.py", "pkg/a.py"]


def test_topologies_follow_the_cloud_tpu_tables():
  assert topologies.tpu("v4-8") == topologies.Topology("v4-8", 4, 1)
  assert topologies.tpu("v5p-8") == topologies.Topology("v5p-8", 4, 1)
  assert topologies.tpu("v5p-64") == topologies.Topology("v5p-64", 32, 8)
  assert topologies.tpu("v5p-256") == topologies.Topology("v5p-256", 128, 32)
  assert topologies.tpu("v6e-8") == topologies.Topology("v6e-8", 8, 1)
  assert topologies.tpu("v6e-256") == topologies.Topology("v6e-256", 256, 64)
  assert topologies.gpu(4, 8) == topologies.Topology("gpu-4x8", 32, 4)


def test_a_whole_tpu_launch_against_a_stand_in_gcloud(tmp_path):
  """Every step runs in order: the bucket check, packing, the queued request, polling until
  ACTIVE, copy, install, then all workers at once with their output streamed and kept, the
  forwarded secret reaching each worker over stdin and appearing in no file or output."""
  fake = tmp_path / "gcloud"
  fake.write_text("#!/bin/sh\n"
                  f'echo "$@" >> "{tmp_path}/calls.txt"\n'
                  'case "$*" in\n'
                  '  *"queued-resources describe"*)\n'
                  f'    n=$(cat "{tmp_path}/polls" 2>/dev/null || echo 0); echo $((n+1)) > "{tmp_path}/polls"\n'
                  '    if [ "$n" -ge 1 ]; then echo ACTIVE; else echo PROVISIONING; fi ;;\n'
                  '  *"tpu-vm describe"*) echo \'{"networkEndpoints": [{}, {}]}\' ;;\n'
                  '  *"--worker=0 "*|*"--worker=1 "*)\n'
                  '    IFS= read -r secret; echo "step 1 loss 0.5 (secret of ${#secret} chars)" ;;\n'
                  'esac\nexit 0\n')
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "MY_TOKEN": "tok-123456789",
         "TALKJAX_LAUNCH_POLL_S": "0.1"}
  proc = subprocess.run(
      [sys.executable, "-m", "talkjax.cli", "launch", "tpu", "--config", "ifmdm/hdtf_512_stage2",
       "--accelerator", "v5p-16", "--zone", "z", "--name", "run1", "--workdir", "gs://b/run1",
       "--env", "MY_TOKEN", "--log-dir", str(tmp_path / "logs")],
      capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr
  calls = [" ".join(c.split()[:4]) for c in (tmp_path / "calls.txt").read_text().splitlines()]
  assert calls[:6] == ["storage buckets describe gs://b", "compute tpus queued-resources create",
                       "compute tpus queued-resources describe",   # PROVISIONING: waits
                       "compute tpus queued-resources describe",   # ACTIVE
                       "compute tpus tpu-vm scp", "compute tpus tpu-vm ssh"]
  assert calls[6:] == ["compute tpus tpu-vm describe"] + ["compute tpus tpu-vm ssh"] * 2
  assert (tmp_path / "logs" / "run1" / "source.tar.gz").stat().st_size > 10_000
  for worker in (0, 1):
    log = (tmp_path / "logs" / "run1" / f"worker-{worker}.log").read_text()
    assert log == "step 1 loss 0.5 (secret of 13 chars)\n"
    assert f"[worker {worker}] step 1 loss 0.5" in proc.stdout
  everything = proc.stdout + proc.stderr + "".join(
      p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*.log"))
  everything += (tmp_path / "calls.txt").read_text()
  assert "tok-123456789" not in everything
  assert "--delete" in proc.stderr                        # the teardown command is shown
