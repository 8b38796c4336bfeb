#!/usr/bin/env bash
# Runs on every cloud host before training (talkjax launch tpu / gpu): installs this project
# with the accelerator's JAX and, given a bucket, mounts it with gcsfuse where the launcher
# points the workdir, so every host reads and writes the same checkpoints.
#   bash launch/remote_setup.sh tpu|gpu [gs://BUCKET MOUNT_POINT ...]
set -euo pipefail
kind=$1
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --upgrade pip
case "$kind" in
  tpu) python3 -m pip install --quiet -e '.[tpu]' ;;
  gpu) python3 -m pip install --quiet -e '.[cuda]' ;;
  *) echo "remote_setup.sh: tpu or gpu, not $kind" >&2; exit 2 ;;
esac
shift
while [ $# -ge 2 ]; do
  bucket=${1#gs://}
  mount=$2
  shift 2
  if ! command -v gcsfuse >/dev/null; then
    release=$(lsb_release -c -s)
    echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$release main" \
      | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null
    curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null
    sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse
  fi
  sudo mkdir -p "$mount" && sudo chown "$(id -u):$(id -g)" "$mount"
  # Orbax finalises a checkpoint by renaming its temporary folder: allow folder renames.
  mountpoint -q "$mount" || gcsfuse --implicit-dirs --rename-dir-limit=1000000 "$bucket" "$mount"
done
echo "remote_setup.sh: ready on $(hostname)"
