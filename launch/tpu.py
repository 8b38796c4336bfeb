"""Training on a Cloud TPU VM slice with `gcloud`: the slice is a queued resource (it waits
for capacity instead of failing), the code goes to every worker as one archive, and the same
`talkjax train` starts on all workers at once over ssh, each worker's output streamed to the
terminal with its number and kept in LOG_DIR/NAME/worker-N.log. JAX's multi-controller
runtime finds the other workers by itself on a TPU slice (TALKJAX_DISTRIBUTED=auto).

  talkjax launch tpu --config memo/paper_512_stage2 --accelerator v5p-64 --zone us-east5-a \\
      --name memo-s2 --workdir gs://my-bucket/memo-s2 --dry-run
  talkjax launch tpu --name memo-s2 --zone us-east5-a --delete       # tear the slice down
"""

from __future__ import annotations

import shlex

from talkjax_launch import cloud, topologies
from talkjax_launch.plan import Plan, Step

# The TPU VM software image per generation (Cloud TPU's documented runtime versions).
RUNTIMES = {"v4": "tpu-ubuntu2204-base", "v5p": "v2-alpha-tpuv5", "v5litepod": "v2-alpha-tpuv5-lite",
            "v5e": "v2-alpha-tpuv5-lite", "v6e": "v2-alpha-tpuv6e"}
INSTALL = "gcloud CLI: https://cloud.google.com/sdk/docs/install, then `gcloud auth login`"


def _where(args) -> list[str]:
  return ["--zone", args.zone] + (["--project", args.project] if args.project else [])


def teardown(args) -> list[Step]:
  return [Step(f"delete the slice {args.name} (and its queued request)",
               ["gcloud", "compute", "tpus", "queued-resources", "delete", args.name,
                *_where(args), "--force", "--quiet"])]


def build(args) -> Plan:
  topology = topologies.tpu(args.accelerator)
  run = cloud.prepare(args, topology)
  where = _where(args)
  runtime = args.runtime_version or RUNTIMES[args.accelerator.split("-")[0]]
  env = dict(run.env)
  if topology.hosts > 1:
    env.setdefault("TALKJAX_DISTRIBUTED", "auto")
  steps = [Step(f"check that the bucket {bucket} exists (before anything is created)",
                ["gcloud", "storage", "buckets", "describe", bucket, "--format=value(name)"],
                explain=(f"the bucket {bucket} does not exist, or this account cannot read it; "
                         "nothing was created", f"create it (gcloud storage buckets create "
                         f"{bucket} --location REGION) or fix the path"))
           for bucket in run.mounts]
  archive, pack = cloud.pack_step(run)
  steps.append(pack)
  steps.append(Step(f"request the slice: {args.accelerator}{' (spot)' if args.spot else ''}, "
                    f"runtime {runtime}",
                    ["gcloud", "compute", "tpus", "queued-resources", "create", run.name,
                     "--node-id", run.name, *where, "--accelerator-type", args.accelerator,
                     "--runtime-version", runtime, *(["--spot"] if args.spot else [])]))
  steps.append(Step("wait until the slice is ACTIVE (polled every 30 s)",
                    ["gcloud", "compute", "tpus", "queued-resources", "describe", run.name,
                     *where, "--format=value(state.state)"],
                    poll=("ACTIVE",), fail_on=("FAILED", "SUSPENDED")))
  ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", run.name, *where]
  steps.append(Step(f"copy the code to all {topology.hosts} worker(s)",
                    ["gcloud", "compute", "tpus", "tpu-vm", "scp", archive,
                     f"{run.name}:talkjax-source.tar.gz", "--worker=all", *where]))
  setup = (f"mkdir -p {cloud.REMOTE_CODE} && tar xzf ~/talkjax-source.tar.gz -C "
           f"{cloud.REMOTE_CODE} && bash {cloud.REMOTE_CODE}/launch/remote_setup.sh tpu")
  for bucket, mount in run.mounts.items():
    setup += f" {bucket} {mount}"
  steps.append(Step("install talkjax (and jax[tpu]) on every worker" +
                    (", mount the bucket(s)" if run.mounts else ""),
                    [*ssh, "--worker=all", "--command", setup]))
  exports = " && ".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
  reads = " && ".join(f"IFS= read -r {k} && export {k}" for k in run.secret_env)
  command = " && ".join(p for p in (reads, f"cd {cloud.REMOTE_CODE}", exports,
                                    cloud.train_command(run)) if p)
  steps.append(Step("start training on every worker at once (each worker's output streamed "
                    "and kept)", [*ssh, "--worker={host}", "--command", command],
                    stdin_env=run.secret_env, log=f"{run.log_dir}/worker-{{host}}.log",
                    prefix="[worker {host}] ",
                    hosts=["gcloud", "compute", "tpus", "tpu-vm", "describe", run.name, *where,
                           "--format=json"], expected_hosts=topology.hosts))
  remove = f"talkjax launch tpu --name {run.name} {' '.join(where)} --delete"
  return Plan("talkjax launch tpu", cloud.summary(run, f", zone {args.zone}"), env,
              run.secret_env, steps, teardown(args), remove)
