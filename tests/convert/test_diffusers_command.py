"""`talkjax convert diffusers` on a Stable Diffusion-style pipeline folder (model_index.json,
vae/, unet/): both models are checked, written as Orbax + config + report, and read back,
also straight into a mesh's shardings, equal to a direct import."""

import json

import jax
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from talkjax.cli import main
from talkjax.convert.diffusers import load_converted
from talkjax.convert.diffusers_unet import load_diffusers_unet
from talkjax.convert.diffusers_vae import load_diffusers_vae
from talkjax.convert.torch_names import flatten


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
  root = tmp_path_factory.mktemp("sd") / "pipeline"
  torch.manual_seed(0)
  vae = AutoencoderKL(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                      down_block_types=("DownEncoderBlock2D",) * 2,
                      up_block_types=("UpDecoderBlock2D",) * 2)
  unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1,
                              norm_num_groups=8, cross_attention_dim=16, attention_head_dim=4,
                              sample_size=8, down_block_types=("CrossAttnDownBlock2D",
                                                               "DownBlock2D"),
                              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
  vae.save_pretrained(root / "vae")
  unet.save_pretrained(root / "unet", safe_serialization=False)   # the .bin path too
  (root / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline",
                                                     "vae": ["diffusers", "AutoencoderKL"]}))
  return root


def test_a_pipeline_folder_converts_both_models_and_reads_back(pipeline, tmp_path, capsys):
  out = tmp_path / "converted"
  assert main(["convert", "diffusers", "--src", str(pipeline), "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "vae" in printed and "unet" in printed
  for name, load in (("vae", load_diffusers_vae), ("unet", load_diffusers_unet)):
    _, direct, report = load(pipeline / name)
    kind, config, params = load_converted(out / name)
    assert kind == name
    lines = (out / name / "report.txt").read_text().splitlines()
    assert len(lines) == len(report) == len(flatten(direct)) > 20
    a, b = flatten(direct), flatten(params)
    assert a.keys() == b.keys()
    for k in a:
      np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=str(k))
  # Writing again over a converted folder is refused rather than mixing two models.
  assert main(["convert", "diffusers", "--src", str(pipeline / "vae"), "--out",
               str(out / "vae")]) == 2
  assert "already holds converted parameters" in capsys.readouterr().err


def test_converted_weights_load_straight_into_shardings(pipeline, tmp_path):
  from jax.sharding import Mesh, NamedSharding, PartitionSpec
  out = tmp_path / "vae"
  main(["convert", "diffusers", "--src", str(pipeline / "vae"), "--out", str(out)])
  _, _, params = load_converted(out)
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "fsdp"))
  # Output channels over fsdp where they divide, replicated elsewhere.
  spec = lambda x: PartitionSpec(*([None] * (x.ndim - 1) + ["fsdp"])) if (
      x.ndim and x.shape[-1] % 4 == 0) else PartitionSpec()
  shardings = jax.tree.map(lambda x: NamedSharding(mesh, spec(x)), params)
  _, _, placed = load_converted(out, shardings)
  kernel = placed["encoder"]["conv_in"]["kernel"]
  assert kernel.sharding == NamedSharding(mesh, PartitionSpec(None, None, None, "fsdp"))
  np.testing.assert_array_equal(np.asarray(kernel), params["encoder"]["conv_in"]["kernel"])


def test_other_models_and_broken_folders_are_clear_errors(tmp_path, capsys):
  other = tmp_path / "controlnet"
  other.mkdir()
  (other / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
  assert main(["convert", "diffusers", "--src", str(other), "--out", str(tmp_path / "o")]) == 2
  assert "ControlNetModel" in capsys.readouterr().err
  empty = tmp_path / "empty"
  empty.mkdir()
  assert main(["convert", "diffusers", "--src", str(empty), "--out", str(tmp_path / "o")]) == 2
  assert "config.json is missing" in capsys.readouterr().err
  assert not (tmp_path / "o").exists()
