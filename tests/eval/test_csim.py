"""CSIM and its two face-recognition networks, against independent references.

- dlib's ResNet ported to Flax vs dlib itself (dlib-bin) running the same shipped .dat on
  the same chips; our chip sampler vs `dlib.get_face_chip`; the MTCNN-landmark chip path vs
  dlib's own detector + 5-point + chip path, on two real photographs.
- The ONNX interpreter vs onnxruntime on small random-weight networks exported by PyTorch
  (an insightface-style IResNet, and a MobileFaceNet-style net with grouped convolutions, a
  `view` flatten and input scaling inside the graph); the ArcFace chip vs scikit-image's
  similarity transform and warp.
- CSIM of a photo against itself, its mirror image and another person; frames without a
  face; every bad input and bad weight file as a TalkjaxError.
"""

from __future__ import annotations

import numpy as np
import pytest

from talkjax.errors import TalkjaxError
from talkjax.eval import csim as csim_lib
from talkjax.eval.extract import map_batches
from talkjax.eval.nets import arcface, dlib_resnet

# dlib's 5-point chip template (eye corners, base of the nose), from dlib's
# get_face_chip_details: the reference our sampler must reproduce.
DLIB_5POINT = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                        [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                        [0.4901123135679, 0.6277975316475]])


@pytest.fixture(scope="module")
def dlib_refs():
  import dlib as dlib_module
  models = dlib_resnet.weights_path().parent
  return {"dlib": dlib_module,
          "detector": dlib_module.get_frontal_face_detector(),
          "shape5": dlib_module.shape_predictor(
              str(models / "shape_predictor_5_face_landmarks.dat")),
          "rec": dlib_module.face_recognition_model_v1(str(dlib_resnet.weights_path()))}


@pytest.fixture(scope="module")
def photos():
  import matplotlib.cbook
  import skimage.data
  from PIL import Image
  with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
    hopper = np.asarray(Image.open(f).convert("RGB"))
  return {"astronaut": skimage.data.astronaut(), "hopper": hopper}


@pytest.fixture(scope="module")
def dlib_params():
  return dlib_resnet.load_params()


def _dlib_chip_and_points(refs, image):
  faces = refs["detector"](image, 0)
  face = max(faces, key=lambda r: r.area())
  shape = refs["shape5"](image, face)
  points = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
  return refs["dlib"].get_face_chip(image, shape), points


def _descriptor(refs, chip):
  return np.asarray(refs["rec"].compute_face_descriptor(np.ascontiguousarray(chip)))


# ---- dlib ----------------------------------------------------------------------------------

def test_dlib_resnet_matches_dlib(dlib_refs, photos, dlib_params):
  chips = [_dlib_chip_and_points(dlib_refs, photos[k])[0] for k in ("astronaut", "hopper")]
  rng = np.random.default_rng(0)
  chips += [chips[0][:, ::-1], np.clip(chips[1] * 0.6 + 40, 0, 255).astype(np.uint8),
            rng.integers(0, 256, chips[0].shape).astype(np.uint8)]
  chips = np.stack([np.ascontiguousarray(c) for c in chips])
  ours = map_batches(dlib_resnet.embed, dlib_params, chips)
  ref = np.stack([_descriptor(dlib_refs, c) for c in chips])
  assert ours.shape == (5, 128)
  rel = np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1)
  cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
  assert rel.max() < 1e-4, rel
  assert cos.min() > 0.99999, cos


def test_dlib_chip_sampler_reproduces_get_face_chip(dlib_refs, photos):
  from PIL import Image
  # No pyramid level (the face is smaller than the chip): identical pixels.
  for key in ("astronaut", "hopper"):
    chip, points = _dlib_chip_and_points(dlib_refs, photos[key])
    ours = csim_lib.dlib_chip(photos[key], points, template=DLIB_5POINT)
    assert np.abs(ours.astype(int) - chip).max() <= 1
  # A face 3x larger: two pyramid levels.
  h, w = photos["hopper"].shape[:2]
  big = np.asarray(Image.fromarray(photos["hopper"]).resize((3 * w, 3 * h), Image.BILINEAR))
  chip, points = _dlib_chip_and_points(dlib_refs, big)
  ours = csim_lib.dlib_chip(big, points, template=DLIB_5POINT)
  assert np.abs(ours.astype(float) - chip).mean() < 1.0


def test_mtcnn_alignment_is_close_to_dlibs_own_path(dlib_refs, photos, dlib_params):
  from talkjax.data.faces import detect_faces
  ours, theirs = [], []
  for key in ("astronaut", "hopper"):
    image = photos[key]
    marks = detect_faces(image)[0].landmarks
    ours.append(csim_lib.dlib_chip(image, marks))
    theirs.append(_descriptor(dlib_refs, _dlib_chip_and_points(dlib_refs, image)[0]))
  ours = map_batches(dlib_resnet.embed, dlib_params, np.stack(ours))
  theirs = np.stack(theirs)
  distance = np.linalg.norm(ours - theirs, axis=1)
  cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
  assert distance.max() < 0.25, distance     # dlib's same-person threshold is 0.6
  assert cos.min() > 0.99, cos
  # and the two people stay apart by dlib's own rule
  assert np.linalg.norm(ours[0] - ours[1]) > 0.6


def test_csim_dlib_self_mirror_other_and_no_face(photos):
  astro, hopper = photos["astronaut"], photos["hopper"]
  frames = np.stack([astro, astro[:, ::-1], hopper[44:556], np.full_like(astro, 128)])
  out = csim_lib.csim(astro, frames)
  per = out["per_frame"]
  assert out["net"] == "dlib" and out["frames_without_face"] == 1
  assert per.shape == (4,) and np.isnan(per[3])
  assert per[0] > 0.9999
  assert per[1] > 0.97
  assert per[2] < 0.92 and per[2] < per[1] - 0.05
  assert out["mean"] == pytest.approx(np.mean(per[:3]), abs=1e-12)


def test_dlib_weight_file_errors(tmp_path):
  with pytest.raises(TalkjaxError, match="not found"):
    dlib_resnet.load_params(tmp_path / "missing.dat")
  junk = tmp_path / "junk.dat"
  junk.write_bytes(b"\x7fELF not a dlib network at all")
  with pytest.raises(TalkjaxError, match="not a readable dlib network file"):
    dlib_resnet.load_params(junk)
  cut = tmp_path / "cut.dat"
  cut.write_bytes(dlib_resnet.weights_path().read_bytes()[:5_000_000])
  with pytest.raises(TalkjaxError, match="runs past the end|ends early"):
    dlib_resnet.load_params(cut)
  # another dlib network: the CNN face detector (loss_mmod) shipped beside the weights
  with pytest.raises(TalkjaxError, match="loss_mmod"):
    dlib_resnet.load_params(dlib_resnet.weights_path().parent / "mmod_human_face_detector.dat")
  network = dlib_resnet.read_network(dlib_resnet.weights_path())
  wrong = dict(network, layers=list(network["layers"]))
  wrong["layers"][25] = dict(wrong["layers"][25], filters=65)
  with pytest.raises(TalkjaxError, match=r"block_3/conv1.*filters 65, expected 64"):
    dlib_resnet.params_from_network(wrong)
  short = dict(network, layers=network["layers"][:-1])
  with pytest.raises(TalkjaxError, match="107 layers"):
    dlib_resnet.params_from_network(short)


# ---- ArcFace (ONNX) ------------------------------------------------------------------------

def _torch_nets():
  import torch
  from torch import nn

  class Block(nn.Module):   # insightface's IBasicBlock
    def __init__(self, cin, c, stride):
      super().__init__()
      self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, c, 3, 1, 1, bias=False)
      self.bn2, self.prelu = nn.BatchNorm2d(c), nn.PReLU(c)
      self.conv2, self.bn3 = nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c)
      self.downsample = None
      if stride != 1 or cin != c:
        self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False),
                                        nn.BatchNorm2d(c))

    def forward(self, x):
      out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
      return out + (x if self.downsample is None else self.downsample(x))

  class IResNet(nn.Module):   # insightface's IResNet, narrower and shallower
    def __init__(self, widths=(8, 16, 32, 64), layers=(1, 2, 1, 1)):
      super().__init__()
      self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
      self.bn1, self.prelu = nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0])
      blocks, cin = [], widths[0]
      for w, n in zip(widths, layers):
        for i in range(n):
          blocks.append(Block(cin, w, 2 if i == 0 else 1))
          cin = w
      self.layers = nn.Sequential(*blocks)
      self.bn2, self.dropout = nn.BatchNorm2d(cin), nn.Dropout(0.0)
      self.fc, self.features = nn.Linear(cin * 7 * 7, 512), nn.BatchNorm1d(512)

    def forward(self, x):
      x = self.layers(self.prelu(self.bn1(self.conv1(x))))
      x = self.dropout(torch.flatten(self.bn2(x), 1))
      return self.features(self.fc(x))

  class MobileStyle(nn.Module):   # scales its own input; depthwise convs; a `view` flatten
    def __init__(self):
      super().__init__()
      self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                nn.PReLU(16))
      self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1, groups=16, bias=False),
                              nn.BatchNorm2d(16), nn.PReLU(16), nn.Conv2d(16, 32, 1),
                              nn.ReLU(), nn.MaxPool2d(2, 2))
      self.gdc = nn.Conv2d(32, 32, 14, groups=32, bias=False)
      self.fc = nn.Linear(32, 128, bias=False)

    def forward(self, x):
      x = (x - 127.5) * 0.0078125
      x = self.gdc(self.dw(self.stem(x)))
      return self.fc(x.view(x.size(0), -1))

  return torch, IResNet(), MobileStyle()


def _randomise(torch, model, seed):
  from torch import nn
  torch.manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
      elif isinstance(m, nn.PReLU):
        m.weight.uniform_(0.0, 0.5)
  return model.eval()


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
  import onnx
  torch, iresnet, mobile = _torch_nets()
  folder = tmp_path_factory.mktemp("onnx")
  paths = {}
  for name, model, seed in (("iresnet", iresnet, 0), ("mobile", mobile, 1)):
    model = _randomise(torch, model, seed)
    path = folder / f"{name}.onnx"
    torch.onnx.export(model, torch.zeros(2, 3, 112, 112), str(path), opset_version=11,
                      input_names=["input.1"], output_names=["embedding"],
                      dynamic_axes={"input.1": {0: "batch"}, "embedding": {0: "batch"}},
                      do_constant_folding=True, dynamo=False)
    paths[name] = path
  # insightface recognises graphs that scale their own input by their first node names
  # (MXNet conversions name them `_minusscalar0`, `_mulscalar0`).
  proto = onnx.load(str(paths["mobile"]))
  for node in proto.graph.node[:8]:
    if node.op_type in ("Sub", "Mul"):
      node.name = {"Sub": "_minusscalar0", "Mul": "_mulscalar0"}[node.op_type]
  onnx.save(proto, str(paths["mobile"]))
  return paths


def _onnxruntime(path, x_nchw):
  import onnxruntime
  session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
  return session.run(None, {session.get_inputs()[0].name: x_nchw.astype(np.float32)})[0]


def test_arcface_onnx_matches_onnxruntime(onnx_models):
  chips = np.random.default_rng(2).integers(0, 256, (5, 112, 112, 3)).astype(np.uint8)
  for name, scaled_outside in (("iresnet", True), ("mobile", False)):
    net = arcface.load_params(onnx_models[name])
    assert (net.input_mean, net.input_std) == ((127.5, 127.5) if scaled_outside else (0.0, 1.0))
    x = chips.astype(np.float32)
    if scaled_outside:
      x = (x - 127.5) / 127.5
    ref = _onnxruntime(onnx_models[name], x.transpose(0, 3, 1, 2))
    ours = map_batches(arcface.embed, net, chips)
    assert ours.shape == ref.shape == (5, 512 if name == "iresnet" else 128)
    rel = np.linalg.norm(ours - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 1e-4, (name, rel)


def test_arcface_remaining_operators_match_onnxruntime(tmp_path):
  from onnx import helper, numpy_helper
  rng = np.random.default_rng(3)

  def init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)

  nodes = [
      helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2], auto_pad="SAME_UPPER"),
      helper.make_node("AveragePool", ["c"], ["p"], kernel_shape=[3, 3], strides=[2, 2],
                       pads=[1, 1, 1, 1], count_include_pad=0),
      helper.make_node("LeakyRelu", ["p"], ["l"], alpha=0.2),
      helper.make_node("Div", ["l", "two"], ["d"]),
      helper.make_node("Sigmoid", ["d"], ["s"]),
      helper.make_node("Identity", ["s"], ["i"]),
      helper.make_node("Dropout", ["i"], ["o"]),
      helper.make_node("GlobalAveragePool", ["o"], ["g"]),
      helper.make_node("Squeeze", ["g", "axes"], ["q"]),
      helper.make_node("Transpose", ["q"], ["t"], perm=[1, 0]),
      helper.make_node("Cast", ["t"], ["f"], to=1),
      helper.make_node("Transpose", ["f"], ["y"], perm=[1, 0])]
  path = _graph_file(tmp_path, "more_ops", nodes,
                     [init("w", rng.normal(0, 0.1, (6, 3, 4, 4)).astype(np.float32)),
                      init("two", np.float32(2.0)), init("axes", np.array([2, 3], np.int64))])
  chips = rng.integers(0, 256, (3, 112, 112, 3)).astype(np.uint8)
  net = arcface.load_params(path)
  x = ((chips.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
  ref = _onnxruntime(path, x)
  ours = map_batches(arcface.embed, net, chips)
  assert ours.shape == ref.shape == (3, 6)
  assert np.abs(ours - ref).max() / np.abs(ref).max() < 1e-5


def test_arcface_chip_matches_skimage(photos):
  from skimage.transform import estimate_transform, warp

  from talkjax.data.faces import detect_faces
  image = photos["hopper"]
  marks = detect_faces(image)[0].landmarks
  ours = csim_lib.arcface_chip(image, marks).astype(float)
  tform = estimate_transform("similarity", marks, csim_lib.ARCFACE_TEMPLATE)
  ref = warp(image.astype(float), tform.inverse, output_shape=(112, 112), order=1,
             mode="constant", cval=0.0, preserve_range=True)
  assert np.abs(ours - ref).max() <= 1.0


def test_csim_arcface_through_path_and_net(onnx_models, photos):
  astro = photos["astronaut"]
  frames = np.stack([astro, np.zeros_like(astro), astro])
  out = csim_lib.csim(astro, frames, net=onnx_models["iresnet"])
  assert out["net"] == "arcface" and out["frames_without_face"] == 1
  assert out["per_frame"][0] == pytest.approx(1.0, abs=1e-5)
  assert np.isnan(out["per_frame"][1])
  net = arcface.load_params(onnx_models["iresnet"])
  again = csim_lib.csim(astro, frames[:1], net=net)
  assert again["mean"] == pytest.approx(1.0, abs=1e-5)


def _graph_file(tmp_path, name, nodes, initializers, inputs=None):
  import onnx
  from onnx import TensorProto, helper
  inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 112, 112])]
  graph = helper.make_graph(nodes, name, inputs,
                            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                            initializer=initializers)
  path = tmp_path / f"{name}.onnx"
  onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
  return path


def test_arcface_bad_files(tmp_path):
  from onnx import helper, numpy_helper
  with pytest.raises(TalkjaxError, match="not found"):
    arcface.load_params(tmp_path / "missing.onnx")
  junk = tmp_path / "junk.onnx"
  junk.write_bytes(b"\x00\xff" * 100)
  with pytest.raises(TalkjaxError, match="not an ONNX model|holds no graph"):
    arcface.load_params(junk)
  w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
  unknown = _graph_file(tmp_path, "unknown", [helper.make_node("Conv", ["x", "w"], ["h"]),
                                              helper.make_node("Erf", ["h"], ["y"])], [w])
  with pytest.raises(TalkjaxError, match="does not run: Erf"):
    arcface.load_params(unknown)
  missing = _graph_file(tmp_path, "missing", [helper.make_node("Conv", ["x", "w2"], ["y"])], [w])
  with pytest.raises(TalkjaxError, match="'w2'.*missing"):
    arcface.load_params(missing)
  extra = numpy_helper.from_array(np.ones(3, np.float32), "leftover")
  unused = _graph_file(tmp_path, "unused", [helper.make_node("Conv", ["x", "w"], ["y"])],
                       [w, extra])
  with pytest.raises(TalkjaxError, match="unexpected tensors.*leftover"):
    arcface.load_params(unused)
  w5 = numpy_helper.from_array(np.ones((4, 5, 3, 3), np.float32), "w")
  shaped = _graph_file(tmp_path, "shaped", [helper.make_node("Conv", ["x", "w"], ["y"],
                                                             name="conv_a")], [w5])
  with pytest.raises(TalkjaxError, match="conv_a.*3 channels"):
    arcface.load_params(shaped)
  from onnx import TensorProto
  gray = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 112, 112])]
  one = _graph_file(tmp_path, "gray", [helper.make_node("Conv", ["x", "w"], ["y"])], [w], gray)
  with pytest.raises(TalkjaxError, match=r"expected \(batch, 3, height, width\)"):
    arcface.load_params(one)
  with pytest.raises(TalkjaxError, match="unknown CSIM network"):
    csim_lib.csim(np.zeros((64, 64, 3), np.uint8), np.zeros((1, 64, 64, 3), np.uint8),
                  net="facenet")


def test_csim_input_errors(photos):
  astro = photos["astronaut"]
  with pytest.raises(TalkjaxError, match="no face in the reference image"):
    csim_lib.csim(np.full_like(astro, 90), astro[None])
  with pytest.raises(TalkjaxError, match=r"must be \(T, H, W, 3\)"):
    csim_lib.csim(astro, astro)
  with pytest.raises(TalkjaxError, match="must be uint8"):
    csim_lib.csim(astro.astype(np.float32), astro[None])
  with pytest.raises(TalkjaxError, match="no frames"):
    csim_lib.csim(astro, np.zeros((0, 512, 512, 3), np.uint8))
  with pytest.raises(TalkjaxError, match="too small"):
    csim_lib.csim(astro, np.zeros((2, 8, 8, 3), np.uint8))


def test_full_frame_crop_scores_face_crops_a_detector_cannot_align():
  """SynthTalk's drawn faces have no MTCNN face; crop="full" takes each frame as the crop:
  the clip itself stays closer to its portrait than the same motion on another person."""
  from talkjax.eval import controls
  from talkjax_datasets.synthtalk.clip import make_clip
  from talkjax_datasets.synthtalk.spec import BuildSpec
  spec = BuildSpec(identities=3, clips=3, seconds=1, resolution=64, seed=12345)
  clip = make_clip(spec, 0)
  with pytest.raises(TalkjaxError, match="no face in the reference"):
    csim_lib.csim(clip["frames"][0], clip["frames"][:2])
  own = csim_lib.csim(clip["frames"][0], clip["frames"], crop="full")
  other = csim_lib.csim(clip["frames"][0], controls.other_identity(spec, 0), crop="full")
  assert own["frames_without_face"] == 0 and own["mean"] > 0.97
  assert other["mean"] < own["mean"] - 0.02
  with pytest.raises(TalkjaxError, match="crop"):
    csim_lib.csim(clip["frames"][0], clip["frames"][:2], crop="square")
