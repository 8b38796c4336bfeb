"""`talkjax bench backbone`: the latent-diffusion backbone's speed, beside diffusers.

Measures VAE decode (frames/s) and one UNet forward (ms; batch 2, as with classifier-free
guidance) at Stable Diffusion 1.5 size (the VAE at 512 px, the UNet at 64x64 latents with
77 x 768 text context) in the compute dtype asked for (bf16 by default), with random
weights (speed does not depend on their values). With `--reference`, diffusers' PyTorch
AutoencoderKL and UNet2DConditionModel run in the same process at the same size and dtype
(torch and diffusers must be installed; on a GPU in fp16/bf16), and the table gives the
ratio. `--size small` runs a tiny config, for CPUs.
"""

from __future__ import annotations

import json
import time

import numpy as np

EXAMPLES = """\
  talkjax bench backbone --json backbone.json                # SD 1.5 size, bf16
  talkjax bench backbone --reference --json backbone.json    # beside diffusers (GPU)
  talkjax bench backbone --size small --dtype float32        # a CPU-sized check
"""

# diffusers config.json fields of SD 1.5's VAE and UNet, and a small pair for CPUs.
SIZES = {
    "sd15": {
        "vae": dict(_class_name="AutoencoderKL", in_channels=3, out_channels=3,
                    block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                    latent_channels=4, norm_num_groups=32, sample_size=512,
                    scaling_factor=0.18215, act_fn="silu",
                    down_block_types=["DownEncoderBlock2D"] * 4,
                    up_block_types=["UpDecoderBlock2D"] * 4),
        "unet": dict(_class_name="UNet2DConditionModel", in_channels=4, out_channels=4,
                     block_out_channels=[320, 640, 1280, 1280], layers_per_block=2,
                     attention_head_dim=8, cross_attention_dim=768, norm_num_groups=32,
                     sample_size=64, flip_sin_to_cos=True, freq_shift=0,
                     down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                     up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3),
        "image": 512, "latent": 64, "context": (77, 768)},
    "small": {
        "vae": dict(_class_name="AutoencoderKL", in_channels=3, out_channels=3,
                    block_out_channels=[32, 64], layers_per_block=1, latent_channels=4,
                    norm_num_groups=8, sample_size=64, act_fn="silu",
                    down_block_types=["DownEncoderBlock2D"] * 2,
                    up_block_types=["UpDecoderBlock2D"] * 2),
        "unet": dict(_class_name="UNet2DConditionModel", in_channels=4, out_channels=4,
                     block_out_channels=[32, 64], layers_per_block=1, attention_head_dim=8,
                     cross_attention_dim=32, norm_num_groups=8, sample_size=16,
                     down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                     up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"]),
        "image": 64, "latent": 16, "context": (8, 32)},
}


def add_arguments(parser):
  parser.add_argument("--size", choices=sorted(SIZES), default="sd15",
                      help="sd15: Stable Diffusion 1.5 (default); small: a tiny pair for CPUs")
  parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16",
                      help="compute dtype (default bfloat16; parameters stay float32)")
  parser.add_argument("--vae-batch", type=int, default=4, help="frames per VAE decode call")
  parser.add_argument("--unet-batch", type=int, default=2,
                      help="UNet batch (default 2: conditional + unconditional)")
  parser.add_argument("--repeats", type=int, default=10, help="timed calls after warm-up")
  parser.add_argument("--reference", action="store_true",
                      help="also time diffusers' PyTorch models at the same size and dtype")


def _random_params(shapes: dict, seed: int = 0) -> dict:
  from talkjax.convert.torch_names import unflatten
  rng = np.random.default_rng(seed)
  return unflatten({k: (rng.standard_normal(s) * 0.02).astype(np.float32)
                    for k, s in shapes.items()})


def _time(fn, repeats: int) -> tuple[float, float]:
  """(seconds of the first call, median seconds of the next `repeats`)."""
  t = time.perf_counter()
  fn()
  first = time.perf_counter() - t
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return first, float(np.median(times))


def bench_talkjax(size: dict, dtype: str, vae_batch: int, unet_batch: int, repeats: int):
  import jax
  import jax.numpy as jnp
  from talkjax.convert.diffusers_unet import config_from_diffusers as unet_config
  from talkjax.convert.diffusers_vae import config_from_diffusers as vae_config
  from talkjax.nn import unet as unet_lib
  from talkjax.nn import vae as vae_lib
  dt = jnp.dtype(dtype)
  rows = []
  vcfg = vae_config(size["vae"])
  vae = vae_lib.AutoencoderKL(vcfg, dtype=dt)
  vparams = jax.device_put(_random_params(vae_lib.expected_shapes(vcfg)))
  lat = size["image"] // vcfg.downsample_factor
  z = jnp.asarray(np.random.default_rng(1).standard_normal(
      (vae_batch, lat, lat, vcfg.latent_channels)), jnp.float32)
  decode = jax.jit(lambda p, z: vae.apply({"params": p}, z, method=vae.decode))
  first, per_call = _time(lambda: decode(vparams, z).block_until_ready(), repeats)
  rows.append({"impl": "talkjax", "what": "vae_decode", "px": size["image"], "batch": vae_batch,
               "dtype": dtype, "first_call_s": first, "ms": per_call * 1e3,
               "frames_per_s": vae_batch / per_call})
  ucfg = unet_config(size["unet"])
  unet = unet_lib.UNet2DConditionModel(ucfg, dtype=dt)
  uparams = jax.device_put(_random_params(unet_lib.param_shapes(ucfg)))
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((unet_batch, size["latent"], size["latent"], 4)),
                  jnp.float32)
  ctx = jnp.asarray(rng.standard_normal((unet_batch,) + size["context"]), jnp.float32)
  t = jnp.full((unet_batch,), 500.0)
  forward = jax.jit(lambda p, x, t, c: unet.apply({"params": p}, x, t, c))
  first, per_call = _time(lambda: forward(uparams, x, t, ctx).block_until_ready(), repeats)
  rows.append({"impl": "talkjax", "what": "unet_forward", "px": size["latent"],
               "batch": unet_batch, "dtype": dtype, "first_call_s": first, "ms": per_call * 1e3})
  return rows


def bench_diffusers(size: dict, dtype: str, vae_batch: int, unet_batch: int, repeats: int):
  import torch
  from diffusers import AutoencoderKL, UNet2DConditionModel
  device = "cuda" if torch.cuda.is_available() else "cpu"
  dt = getattr(torch, dtype)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  clean = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}
  rows = []
  with torch.no_grad():
    vae = AutoencoderKL(**clean(size["vae"])).to(device, dt).eval()
    lat = size["image"] // 2 ** (len(size["vae"]["block_out_channels"]) - 1)
    z = torch.randn(vae_batch, 4, lat, lat, device=device, dtype=dt)
    first, per_call = _time(lambda: (vae.decode(z), sync()), repeats)
    rows.append({"impl": "diffusers", "what": "vae_decode", "px": size["image"],
                 "batch": vae_batch, "dtype": dtype, "first_call_s": first,
                 "ms": per_call * 1e3, "frames_per_s": vae_batch / per_call})
    unet = UNet2DConditionModel(**clean(size["unet"])).to(device, dt).eval()
    x = torch.randn(unet_batch, 4, size["latent"], size["latent"], device=device, dtype=dt)
    ctx = torch.randn((unet_batch,) + size["context"], device=device, dtype=dt)
    t = torch.full((unet_batch,), 500, device=device)
    first, per_call = _time(lambda: (unet(x, t, ctx), sync()), repeats)
    rows.append({"impl": "diffusers", "what": "unet_forward", "px": size["latent"],
                 "batch": unet_batch, "dtype": dtype, "first_call_s": first,
                 "ms": per_call * 1e3})
  return rows


def run(args):
  import jax
  from talkjax.errors import TalkjaxError
  if min(args.vae_batch, args.unet_batch, args.repeats) < 1:
    raise TalkjaxError("--vae-batch, --unet-batch and --repeats must be >= 1")
  size = SIZES[args.size]
  rows = bench_talkjax(size, args.dtype, args.vae_batch, args.unet_batch, args.repeats)
  if args.reference:
    try:
      rows += bench_diffusers(size, args.dtype, args.vae_batch, args.unet_batch, args.repeats)
    except (ImportError, RuntimeError) as e:   # diffusers wraps a failed import in RuntimeError
      first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise TalkjaxError(f"--reference needs importable torch and diffusers ({first_line})",
                         fix="pip install torch diffusers (with a torchvision that matches "
                             "the torch build)") from e
    for what in ("vae_decode", "unet_forward"):
      ours, theirs = (next(r for r in rows if r["impl"] == i and r["what"] == what)
                      for i in ("talkjax", "diffusers"))
      ours["speedup_vs_diffusers"] = theirs["ms"] / ours["ms"]
  device = jax.devices()[0]
  print(f"device: {device.device_kind} x {jax.device_count()} ({jax.default_backend()}), "
        f"size {args.size}")
  print(f"{'impl':10s} {'what':13s} {'px':>5s} {'batch':>5s} {'dtype':9s} {'ms':>9s} "
        f"{'frames/s':>9s} {'speedup':>8s} {'1st call s':>10s}")
  for r in rows:
    fps = f"{r['frames_per_s']:9.1f}" if "frames_per_s" in r else " " * 9
    speed = f"{r['speedup_vs_diffusers']:7.2f}x" if "speedup_vs_diffusers" in r else " " * 8
    print(f"{r['impl']:10s} {r['what']:13s} {r['px']:5d} {r['batch']:5d} {r['dtype']:9s} "
          f"{r['ms']:9.2f} {fps} {speed} {r['first_call_s']:10.1f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": device.device_kind, "backend": jax.default_backend(),
                 "size": args.size, "rows": rows}, f, indent=2)
  return 0
