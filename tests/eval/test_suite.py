"""`talkjax eval model` with the standard metrics: every metric next to ground truth's value
and the still-portrait control's, on the shipped model; weight files are checked before
any sampling."""

import json
import time

import numpy as np
import pytest

from talkjax.cli import main
from talkjax.errors import TalkjaxError
from talkjax.eval.suite import Suite, SuiteOptions
from talkjax_datasets.synthtalk.builder import build
from talkjax_datasets.synthtalk.spec import BuildSpec


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
  return build(BuildSpec(identities=3, clips=3, seconds=2.56, resolution=64, seed=778),
               tmp_path_factory.mktemp("suite") / "heldout", workers=1)


def test_eval_model_reports_the_standard_metrics_beside_truth_and_a_still_portrait(
    heldout, tmp_path, capsys):
  from talkjax.models import shipped_demo_model
  report = tmp_path / "report"
  assert main(["eval", "model", "--checkpoint", str(shipped_demo_model()), "--data",
               str(heldout), "--split", "train", "--controls", "--fvd", "--frame-metrics",
               "--csim", "dlib", "--csim-crop", "full", "--report", str(report)]) == 0
  suite = json.loads((report / "metrics.json").read_text())["suite"]
  assert set(suite) == {"FVD", "CSIM", "LPIPS", "PSNR", "SSIM"}
  assert suite["FVD"]["truth"] is None and suite["FVD"]["generated"] > 0
  assert suite["FVD"]["still"] > 0
  assert 0.9 < suite["CSIM"]["truth"] <= 1.0 and suite["CSIM"]["still"] > 0.999
  assert 0 < suite["LPIPS"]["generated"] < 1 and 5 < suite["PSNR"]["generated"] < 60
  assert 0 < suite["SSIM"]["generated"] < 1
  table = (report / "table.md").read_text()
  assert "| standard metric | ground truth | generated | still portrait | protocol |" in table
  assert "| FVD | n/a |" in table


def test_missing_weight_files_fail_before_any_sampling(heldout, tmp_path, capsys):
  from talkjax.models import shipped_demo_model
  for flag, name in (("--fid-weights", "pt_inception.pth"), ("--syncnet-weights", "syncnet_v2.model"),
                     ("--csim", "w600k_r50.onnx")):
    start = time.perf_counter()
    code = main(["eval", "model", "--checkpoint", str(shipped_demo_model()), "--data",
                 str(heldout), "--split", "train", flag, str(tmp_path / name)])
    assert code == 2
    assert name in capsys.readouterr().err
    assert time.perf_counter() - start < 30   # no sampling happened


def test_suite_options_are_validated():
  with pytest.raises(TalkjaxError, match="fvd-stride"):
    Suite(SuiteOptions(fvd=True, fvd_stride=0))
  with pytest.raises(TalkjaxError, match="csim"):
    Suite(SuiteOptions(csim="resnet.pth"))


def test_frechet_rows_compare_each_side_with_ground_truth():
  suite = Suite(SuiteOptions())
  rng = np.random.default_rng(0)
  truth = [rng.normal(size=(40, 6)) for _ in range(2)]
  suite._rows = {"fvd": {"generated": [t + 0.01 * rng.normal(size=t.shape) for t in truth],
                         "truth": truth, "still": [t * 0 + 3 for t in truth]}}
  row = suite.results()["FVD"]
  assert row["generated"] < 0.01 and row["still"] > 10 and row["truth"] is None
