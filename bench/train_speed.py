"""Train-step speed of the project's jitted JAX step against PyTorch, and against the matmul rate.

Times, in one process on one device:
  * "model step" cases, on precomputed features, against a PyTorch implementation of the
    identical network, loss and optimiser (`bench.torch_reference`, NCHW, eager):
      - train_B{B}_T{T}: N_W (`networks.WLER`) on B feature maps of T frames (default 8 x 1280),
        BCE (`steps.feature_loss`, Eq. 2) weighted over examples, Adagrad(1e-3) from
        `steps.make_optimizer`, one `TrainState.apply_gradients`; dropout rng folded with the
        step; jitted with `donate_argnums=0` exactly like `main`'s step;
      - train_slat_B{N}_T128: N_S (`networks.SegmentNet`, dense head) on N 128-frame windows
        (default 32), the same loss and optimiser;
      - infer_B{B}_T{T}: N_W's inference forward (no dropout) -> clip logits.
  * "full step" cases: the real `steps.make_train_step` (what `main` jits) on an int16
    waveform batch built by `input_pipeline.collate`, with B/4 recordings so that the example
    count matches (each recording is 4 log-mel scales computed on the device):
      - full_wler_B{B/4}x4_T{T}: B/4 recordings of T frames through the WLER step;
      - full_slat_B{N/4}x4_T128: N/4 recordings of 128 frames through the SLAT step (hop 128:
        one window per scale).
    These include the on-device log-mel (timed alone as `logmel_s`); no PyTorch twin.

Every time is the median wall time of `--reps` calls after one warm-up call (compilation is
done ahead of time and reported as `compile_s`; the warm-up call is excluded). JAX calls end
with `jax.block_until_ready`, PyTorch ones with `torch.cuda.synchronize` on a GPU (PyTorch CPU
ops are synchronous). Training states are carried from call to call (donated on the JAX side),
as in training.

FLOPs (the `gflop` field, used for GFLOP/s of both frameworks) are counted analytically: a
conv layer costs 2 * K * K * Cin * Cout * H_out * W_out, a dense layer 2 * In * Out; biases,
ReLU, pooling, masks, loss and optimiser are not counted. A train step is forward + weight
gradients (= forward, every layer) + input gradients (= forward, every layer but the first,
whose input is the features): ~3x forward. At the paper's widths N_W costs ~11.5 MFLOP per
frame forward, so B=8 x T=1280 forward is ~118 GFLOP and a train step ~353 GFLOP. XLA's own
count (`compiled.cost_analysis()["flops"]`, everything in the compiled program, the log-mel
of full steps included) is reported beside it as `xla_gflop`; on CPU it agreed with the
analytic count within ~2% until the kernel gradients moved into `lax.fori_loop` chunks
(`conv.kernel_grad`): XLA counts a loop body once, so at paper width train steps now read
~30% low; forward-only counts still agree. On GPUs it leaves out the cuDNN convolutions
(custom calls) and means little.

The device's matmul rate is measured in the same run: a jitted `jnp.dot` of two N x N
matrices in the compute dtype (N = 2048 on CPU, 8192 on accelerators), median of at least 10
calls, once before and once after the cases; `matmul_gflops` is the better of the two (on a
shared CPU other jobs can halve one of them; both are stored as `matmul` / `matmul_end`).
`fraction_of_matmul` = the JAX step's GFLOP/s / that rate. PyTorch's own matmul rate
(`torch.matmul`, same size, same rule) is `torch_matmul_gflops`, and
`torch_fraction_of_matmul` = PyTorch's GFLOP/s / that rate.

Breakdown (`--breakdown`, default on): per train case, the JAX loss forward alone (train mode,
jitted), `value_and_grad` alone and the whole step; PyTorch forward + loss (autograd
recording), forward + backward, and the whole step. backward ~ (fwd+bwd) - fwd, optimiser and
the rest ~ step - (fwd+bwd).

Threads: XLA:CPU runs its intra-op pool on every core the process may use
(`os.sched_getaffinity`), which is not configurable from here; PyTorch gets
`torch.set_num_threads(--torch_threads, default os.cpu_count())`. Both are printed and stored.
On a GPU, JAX's allocator is limited to half of the device memory
(`XLA_PYTHON_CLIENT_MEM_FRACTION=0.5` unless already set) so that PyTorch has room.

Differences from the JAX side that cost nothing: PyTorch's Adagrad adds eps after the square
root (g / (sqrt(sum g^2) + eps)) where optax adds it inside (g / sqrt(sum g^2 + eps)); the
dropout masks differ (different RNGs). Precision, which does change the cost on GPUs: PyTorch
keeps its defaults (cuDNN convs may use TF32, matmuls are true fp32;
`torch.backends.cudnn.benchmark` is switched on for the fixed shapes) and XLA its own (TF32-class
for float32 dots and convs on recent GPUs: the float32 matmul rate then reads ~7x PyTorch's
true-fp32 one); both are recorded. `--fp32_precision highest` makes both frameworks compute in
true float32 (`jax_default_matmul_precision="highest"`, PyTorch TF32 off), `tf32` lets both use
TF32; on CPU the flag changes nothing. `--dtype bfloat16` builds the JAX models with
`dtype=jnp.bfloat16` (float32 params) and runs PyTorch under `torch.autocast(bfloat16)`.
A forward check (eval mode, Flax weights copied into the PyTorch twins) on a small batch
confirms the two networks compute the same function (`check` in the JSON).

torch is an optional bench-only extra (`pip install -e .[bench]`): without it (or with
`--no_torch`) only the JAX columns are filled and the torch fields are null.

Usage:
  python -m bench.train_speed [--reps N] [--width W] [--dtype float32|bfloat16] [--quick]
      [--fp32_precision default|tf32|highest] [--no_torch] [--torch_threads N]
      [--torch_compile] [--no_breakdown] [--cases ...] [--json PATH]

JSON (`--json`, default bench/results/train_speed_<device>[_quick].json):
  {"device": ..., "matmul_gflops": ..., "cases": [{"name": "train_B8_T1280", "jax_s": ...,
   "torch_s": ..., "speedup_vs_torch": torch_s / jax_s, "gflops": ..., "fraction_of_matmul": ...,
   ...}, ...], ...} with threads, load average, versions and per-rep times beside.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import time
import traceback

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")  # leave room for PyTorch on a GPU

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from bench import common  # noqa: E402
from wler_jax import features as features_lib  # noqa: E402
from wler_jax import geometry  # noqa: E402
from wler_jax.data import input_pipeline  # noqa: E402
from wler_jax.model import networks  # noqa: E402
from wler_jax.model.spec import CONV1_IMPLS  # noqa: E402
from wler_jax.training import steps  # noqa: E402

CASES = ("train", "train_slat", "infer", "full", "full_slat")


# --------------------------------------------------------------------------------- inputs

def waveform_batch(rng: np.random.Generator, recordings: int, frames: int) -> dict:
    """A real pipeline batch (`input_pipeline.collate`) of `recordings` whole recordings of
    `frames` frames each, int16 noise and tones."""
    n = (frames - 1) * geometry.HOP_LENGTH  # 1 + n // 512 == frames
    t = np.arange(n) / geometry.SAMPLE_RATE
    source = []
    for i in range(recordings):
        x = 0.05 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * (220.0 * (i + 1)) * t)
        labels = np.flatnonzero(common.multi_hot(rng, 1)[0]).tolist()
        audio = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)  # the stored format
        source.append({"audio": audio, "labels": labels,
                       "id": f"rec{i}"})
    batch = input_pipeline.collate(source, frames, np.arange(recordings),
                                   num_classes=common.NUM_CLASSES)
    assert int(batch["num_frames"][0]) == frames, batch["num_frames"]
    return batch


# ------------------------------------------------------------------------------ JAX side


def jax_train_case(kind: str, batch_np: dict, args, dtype, base_rng) -> dict:
    """Model step (+ breakdown) of N_W or N_S on precomputed features."""
    model = common.make_model(kind, args.width, dtype, args.conv1_impl)
    state = common.init_state(model, args.seed)
    params_np = jax.tree.map(np.asarray, state.params)  # for the PyTorch twin (same init)
    batch = jax.device_put(batch_np)
    loss_fn = common.make_model_loss(model)
    step, compile_s, xla_gflop = common.compile_aot(common.make_model_step(loss_fn, base_rng),
                                                    state, batch, donate_argnums=0)
    out = {"params_np": params_np, "compile_s": compile_s, "xla_gflop": xla_gflop,
           "num_params": networks.num_params(state.params)}
    runner = common.Carry(step, state, batch)
    out["step"] = common.time_calls(runner, args.reps)
    out["final_loss"] = float(runner()["loss"])
    if args.breakdown:
        rng = jax.random.fold_in(base_rng, 0)
        params = runner.state.params
        fwd, _, fwd_gflop = common.compile_aot(loss_fn, params, batch, rng)
        vg, _, vg_gflop = common.compile_aot(jax.value_and_grad(loss_fn), params, batch, rng)
        out["forward"] = common.time_calls(lambda: fwd(params, batch, rng), args.reps)
        out["forward_backward"] = common.time_calls(lambda: vg(params, batch, rng), args.reps)
        out["xla_gflop_forward"], out["xla_gflop_forward_backward"] = fwd_gflop, vg_gflop
    del runner
    return out


def jax_infer_case(batch_np: dict, args, dtype) -> dict:
    model = common.make_model("wler", args.width, dtype, args.conv1_impl)
    state = common.init_state(model, args.seed)
    params = state.params
    batch = jax.device_put(batch_np)
    fn, compile_s, xla_gflop = common.compile_aot(
        lambda p, f, n: model.module().apply({"params": p}, f, n)[0], params, batch["features"],
        batch["num_frames"])
    timing = common.time_calls(lambda: fn(params, batch["features"], batch["num_frames"]),
                               args.reps)
    return {"params_np": jax.tree.map(np.asarray, params), "compile_s": compile_s,
            "xla_gflop": xla_gflop, "step": timing}


def jax_full_case(kind: str, batch_np: dict, args, dtype, base_rng) -> dict:
    """The real `steps.make_train_step` on a waveform batch (log-mel on the device)."""
    model = common.make_model(kind, args.width, dtype, args.conv1_impl)
    state = common.init_state(model, args.seed)
    batch = jax.device_put(batch_np)
    step_fn = steps.make_train_step(model, slat_hop=geometry.SEGMENT_FRAMES, base_rng=base_rng)
    step, compile_s, xla_gflop = common.compile_aot(step_fn, state, batch, donate_argnums=0)
    runner = common.Carry(step, state, batch)
    out = {"compile_s": compile_s, "xla_gflop": xla_gflop,
           "step": common.time_calls(runner, args.reps)}
    metrics = runner()
    out["final_loss"] = float(metrics["loss"])
    out["examples"] = float(metrics["examples"])
    logmel, _, logmel_gflop = common.compile_aot(
        lambda a, n: features_lib.multi_scale_log_mel(a, n)[0], batch["audio"],
        batch["num_samples"])
    out["logmel"] = common.time_calls(lambda: logmel(batch["audio"], batch["num_samples"]),
                                      args.reps)
    out["xla_gflop_logmel"] = logmel_gflop
    del runner
    return out


# ---------------------------------------------------------------------------- PyTorch side


class NoTorch:
    """Stands in for `bench.torch_reference.TorchSide` without torch (or with --no_torch)."""

    available = False

    def __init__(self, error: str):
        self.error = error

    def info(self) -> dict:
        return {"torch_version": None, "torch_device": None, "torch_threads": None,
                "torch_error": self.error}


def torch_side(args):
    """The PyTorch half of the bench, or a `NoTorch` saying why there is none."""
    if args.no_torch:
        return NoTorch("--no_torch")
    try:  # torch is an optional bench-only extra: imported only when present
        from bench import torch_reference
    except ImportError as e:
        return NoTorch(f"torch not importable: {e}")
    return torch_reference.TorchSide(args)


# ------------------------------------------------------------------------------ reporting

def median_or_none(entry: dict | None, key: str = "step"):
    if not entry or key not in entry:
        return None
    return entry[key]["median"]


def build_case(name: str, group: str, examples: int, frames: int, flops: float,
               jax_res: dict, torch_res: dict | None, extra: dict) -> dict:
    """One JSON case; `fraction_of_matmul` fields are filled in by `add_fractions`."""
    jax_s = jax_res["step"]["median"]
    torch_s = median_or_none(torch_res)
    gflops = flops / 1e9 / jax_s
    case = {
        "name": name, "group": group, "examples": examples, "frames": frames,
        "jax_s": jax_s, "torch_s": torch_s,
        "speedup_vs_torch": None if torch_s is None else torch_s / jax_s,
        "gflops": gflops, "fraction_of_matmul": None,
        "gflop": flops / 1e9, "flop_count": "analytic (module docstring)",
        "xla_gflop": jax_res.get("xla_gflop"),
        "torch_gflops": None if torch_s is None else flops / 1e9 / torch_s,
        "torch_fraction_of_matmul": None,
        "jax_times": jax_res["step"]["times"], "jax_first_call_s": jax_res["step"]["first_call"],
        "jax_compile_s": jax_res.get("compile_s"),
        "torch_times": None if torch_s is None else torch_res["step"]["times"],
        "torch_first_call_s": None if torch_s is None else torch_res["step"]["first_call"],
        **extra,
    }
    breakdown = {}
    for part in ("forward", "forward_backward"):
        if part in jax_res:
            breakdown[f"jax_{part}_s"] = jax_res[part]["median"]
            breakdown[f"jax_{part}_times"] = jax_res[part]["times"]
        if torch_res and part in torch_res:
            breakdown[f"torch_{part}_s"] = torch_res[part]["median"]
            breakdown[f"torch_{part}_times"] = torch_res[part]["times"]
    for side, res in (("jax", jax_res), ("torch", torch_res)):
        if res and "forward" in res and "forward_backward" in res:
            f, fb, s = res["forward"]["median"], res["forward_backward"]["median"], \
                res["step"]["median"]
            breakdown[f"{side}_backward_s_est"] = fb - f
            breakdown[f"{side}_optimizer_and_rest_s_est"] = s - fb
    if "xla_gflop_forward" in jax_res:
        breakdown["xla_gflop_forward"] = jax_res["xla_gflop_forward"]
        breakdown["xla_gflop_forward_backward"] = jax_res["xla_gflop_forward_backward"]
    if breakdown:
        case["breakdown"] = breakdown
    if torch_res and "compile" in torch_res:
        comp = torch_res["compile"]
        case["torch_compile_s"] = median_or_none(comp)
        case["torch_compile_first_call_s"] = comp["step"]["first_call"] if "step" in comp else None
        case["torch_compile_error"] = comp.get("error")
    return case


def add_fractions(cases: list[dict], matmul: float, torch_matmul: float | None) -> None:
    """GFLOP/s as a fraction of the measured matmul rate (JAX: JAX's; PyTorch: PyTorch's)."""
    for c in cases:
        c["fraction_of_matmul"] = c["gflops"] / matmul
        if c["torch_gflops"] is not None and torch_matmul:
            c["torch_fraction_of_matmul"] = c["torch_gflops"] / torch_matmul


def fmt(x, spec) -> str:
    return "-" if x is None else format(x, spec)


def print_tables(out: dict) -> None:
    print(f"\ndevice {out['device']} ({out['platform']}); JAX threads "
          f"{out['jax_threads'] or '-'}, PyTorch threads {out['torch_threads'] or '-'} on "
          f"{out['torch_device'] or '-'}; {out['dtype']} "
          f"(fp32 precision {out['fp32_precision']}), "
          f"width {out['width']:g}; median of {out['reps']} rep(s) after 1 warm-up; "
          f"load average {out['loadavg_start'][0]:.2f} -> {out['loadavg_end'][0]:.2f}")
    tm = out.get("torch_matmul_gflops")
    print(f"matmul {out['matmul']['n']}x{out['matmul']['n']} {out['matmul']['dtype']}: JAX "
          f"{out['matmul_gflops']:.1f} GFLOP/s" + ("" if tm is None else
                                                     f", PyTorch {tm:.1f} GFLOP/s"))
    head = (f"{'case':<26} {'GFLOP':>7} {'JAX':>10} {'PyTorch':>10} {'speed-up':>8} "
            f"{'JAX GF/s':>8} {'%matmul':>7} {'PT GF/s':>8} {'XLA GFLOP':>9}")
    print(head)
    print("-" * len(head))
    for c in out["cases"]:
        pct = None if c["fraction_of_matmul"] is None else 100 * c["fraction_of_matmul"]
        print(f"{c['name']:<26} {c['gflop']:>7.1f} {common.fmt_s(c['jax_s']):>10} "
              f"{common.fmt_s(c['torch_s']):>10} "
              f"{(fmt(c['speedup_vs_torch'], '.2f') + 'x') if c['speedup_vs_torch'] else '-':>8} "
              f"{c['gflops']:>8.1f} {fmt(pct, '.1f'):>7} {fmt(c['torch_gflops'], '.1f'):>8} "
              f"{fmt(c['xla_gflop'], '.1f'):>9}")
    rows = [c for c in out["cases"] if "breakdown" in c]
    if rows:
        print("\nbreakdown (median s): fwd = loss forward in train mode; f+b = value_and_grad / "
              "forward+backward; bwd ~ f+b - fwd; opt ~ step - f+b")
        head = (f"{'case':<26} {'JAX fwd':>9} {'f+b':>9} {'bwd':>9} {'opt':>9} {'step':>9} | "
                f"{'PT fwd':>9} {'f+b':>9} {'bwd':>9} {'opt':>9} {'step':>9}")
        print(head)
        print("-" * len(head))
        for c in rows:
            b = c["breakdown"]
            g = lambda k: common.fmt_s(b.get(k))  # noqa: E731
            print(f"{c['name']:<26} {g('jax_forward_s'):>9} {g('jax_forward_backward_s'):>9} "
                  f"{g('jax_backward_s_est'):>9} {g('jax_optimizer_and_rest_s_est'):>9} "
                  f"{common.fmt_s(c['jax_s']):>9} | {g('torch_forward_s'):>9} "
                  f"{g('torch_forward_backward_s'):>9} {g('torch_backward_s_est'):>9} "
                  f"{g('torch_optimizer_and_rest_s_est'):>9} {common.fmt_s(c['torch_s']):>9}")
    full = [c for c in out["cases"] if c["group"] == "full_step"]
    for c in full:
        print(f"{c['name']}: real make_train_step {common.fmt_s(c['jax_s'])} (log-mel of the 4 scales "
              f"alone {common.fmt_s(c['logmel_s'])}); model step on the same example count "
              f"{common.fmt_s(c.get('model_step_s'))}")
    comp = [c for c in out["cases"] if "torch_compile_s" in c or c.get("torch_compile_error")]
    for c in comp:
        print(f"{c['name']}: torch.compile step {common.fmt_s(c.get('torch_compile_s'))} "
              f"(first call {common.fmt_s(c.get('torch_compile_first_call_s'))})"
              + (f" error: {c['torch_compile_error']}" if c.get("torch_compile_error") else ""))
    for c in out.get("failed_cases", []):
        print(f"FAILED {c['name']}: {c['error']}")
    if out.get("check"):
        k = out["check"]
        if "error" in k:
            print(f"\nJAX vs PyTorch forward check failed: {k['error']}")
        else:
            print(f"\nJAX vs PyTorch forward (eval, same weights): N_W segment logits max |diff| "
                  f"{k['wler_segment_logits_max_abs_diff']:.2e} (logits up to "
                  f"{k['wler_max_abs_logit']:.3g}); N_S {k['slat_logits_max_abs_diff']:.2e} "
                  f"(up to {k['slat_max_abs_logit']:.3g})")


# ----------------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=None,
                        help="timed calls after warm-up; default 3 on CPU, 20 on accelerators, "
                             "1 with --quick")
    parser.add_argument("--width", type=float, default=None,
                        help="network width (1.0 = the paper's); default 1.0 (--quick: 0.25)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="compute dtype (JAX model dtype; PyTorch autocast)")
    parser.add_argument("--frames", type=int, default=None,
                        help="T of the WLER cases; default 1280 (--quick: 256)")
    parser.add_argument("--batch", type=int, default=8,
                        help="B of the WLER cases (examples; full step: B/4 recordings)")
    parser.add_argument("--slat_batch", type=int, default=32,
                        help="number of 128-frame windows of the SLAT case (multiple of 4)")
    parser.add_argument("--fp32_precision", choices=("default", "tf32", "highest"),
                        default="default",
                        help="float32 matmul/conv precision on GPUs: each framework's default "
                             "(XLA: TF32-class on recent GPUs; PyTorch: TF32 convs, fp32 "
                             "matmuls), tf32 for both, or highest (true fp32) for both")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: width 0.25, 1 rep, T=256 unless given")
    parser.add_argument("--no_torch", action="store_true", help="JAX columns only")
    parser.add_argument("--torch_threads", type=int, default=os.cpu_count() or 1,
                        help="torch.set_num_threads (default os.cpu_count())")
    parser.add_argument("--torch_compile", action="store_true",
                        help="also time torch.compile'd forward+loss train steps (optional)")
    parser.add_argument("--breakdown", dest="breakdown", action="store_true", default=True,
                        help="also time forward alone and forward+backward alone per train case "
                             "(default)")
    parser.add_argument("--no_breakdown", "--no-breakdown", dest="breakdown",
                        action="store_false", help="skip the breakdown")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conv1_impl", choices=CONV1_IMPLS, default="plain",
                        help="C1P1 as XLA ops or one fused Pallas kernel (conv1_pallas)")
    parser.add_argument("--json", default=None,
                        help="output path; default bench/results/train_speed_<device>[_quick].json")
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    if args.width is None:
        args.width = 0.25 if args.quick else 1.0
    if args.reps is None:
        args.reps = 1 if args.quick else (3 if on_cpu else 20)
    if args.frames is None:
        args.frames = 256 if args.quick else 1280
    if args.batch % 4 or args.slat_batch % 4:
        parser.error("--batch and --slat_batch must be multiples of 4 (4 scales per recording)")
    if args.frames < geometry.SEGMENT_FRAMES:
        parser.error(f"--frames must be at least {geometry.SEGMENT_FRAMES}")
    if args.json is None:
        args.json = os.path.join(common.RESULTS_DIR,
                                 f"train_speed_{common.device_slug(device.device_kind)}"
                                 f"{'_quick' if args.quick else ''}.json")
    return args


def run_cases(args, torch, dtype, rng, base_rng) -> tuple[list, list]:
    """(cases, failed): every case of `args.cases`, JAX and (where it has a twin) PyTorch
    (`torch`: a `TorchSide` or `NoTorch`)."""
    b, t, ns = args.batch, args.frames, args.slat_batch
    wler_batch = common.feature_batch(rng, b, t)
    slat_batch = common.feature_batch(rng, ns, geometry.SEGMENT_FRAMES)
    fl_wler = common.analytic_flops("wler", t, args.width)
    fl_slat = common.analytic_flops("slat", geometry.SEGMENT_FRAMES, args.width)
    model_step_s = {}

    def train(kind, batch, examples, frames, flops, name, model):
        jr = jax_train_case(kind, batch, args, dtype, base_rng)
        tr = torch.train_case(kind, batch, jr["params_np"], args) if torch.available else None
        model_step_s[kind] = jr["step"]["median"]
        return build_case(name, "model_step", examples, frames, examples * flops["train"], jr, tr,
                          {"model": model, "jax_final_loss": jr["final_loss"],
                           "torch_final_loss": None if tr is None else tr["final_loss"],
                           "num_params": jr["num_params"]})

    def infer():
        infer_batch = {k: wler_batch[k] for k in ("features", "num_frames")}
        jr = jax_infer_case(infer_batch, args, dtype)
        tr = torch.infer_case(infer_batch, jr["params_np"], args) if torch.available else None
        return build_case(f"infer_B{b}_T{t}", "inference", b, t, b * fl_wler["forward"], jr, tr,
                          {"model": "N_W (WLER), eval mode"})

    def full(kind):
        examples, frames = (b, t) if kind == "wler" else (ns, geometry.SEGMENT_FRAMES)
        flops = examples * (fl_wler if kind == "wler" else fl_slat)["train"]
        jr = jax_full_case(kind, waveform_batch(rng, examples // 4, frames), args, dtype, base_rng)
        model = ("N_W (WLER) via steps.make_train_step" if kind == "wler"
                 else "N_S (SLAT) via steps.make_train_step, hop 128")
        return build_case(f"full_{kind}_B{examples // 4}x4_T{frames}", "full_step", examples,
                          frames, flops, jr, None,
                          {"model": model, "recordings": examples // 4,
                           "logmel_s": jr["logmel"]["median"],
                           "xla_gflop_logmel": jr["xla_gflop_logmel"],
                           "model_step_s": model_step_s.get(kind),
                           "jax_final_loss": jr["final_loss"], "examples_counted": jr["examples"],
                           "note": "gflops counts the network only; the time includes the "
                                   "log-mel of 4 scales"})

    plan = [("train", f"train_B{b}_T{t} (N_W model step)",
             lambda: train("wler", wler_batch, b, t, fl_wler, f"train_B{b}_T{t}", "N_W (WLER)")),
            ("train_slat", f"train_slat_B{ns}_T128 (N_S model step)",
             lambda: train("slat", slat_batch, ns, geometry.SEGMENT_FRAMES, fl_slat,
                           f"train_slat_B{ns}_T128", "N_S (SLAT, dense head)")),
            ("infer", f"infer_B{b}_T{t} (N_W forward)", infer),
            ("full", f"full_wler_B{b // 4}x4_T{t} (real make_train_step, log-mel on the device)",
             lambda: full("wler")),
            ("full_slat", f"full_slat_B{ns // 4}x4_T128 (real make_train_step, log-mel on the "
                          "device)", lambda: full("slat"))]
    cases, failed = [], []
    for key, label, fn in plan:
        if key not in args.cases:
            continue
        print(f"  {label} ...", flush=True)
        try:
            cases.append(fn())
        except Exception as e:  # noqa: BLE001 - one failing case must not lose the others
            traceback.print_exc()
            failed.append({"name": label.split(" ")[0], "error": f"{type(e).__name__}: {e}"})
    return cases, failed


def main(argv=None):
    args = parse_args(argv)
    device = jax.devices()[0]
    on_cpu = device.platform == "cpu"
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    if args.fp32_precision == "highest":
        jax.config.update("jax_default_matmul_precision", "highest")
    elif args.fp32_precision == "tf32":
        jax.config.update("jax_default_matmul_precision", "tensorfloat32")
    jax_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count()
    loadavg_start = os.getloadavg()
    torch = torch_side(args)
    tinfo = torch.info()
    print(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}, "
          f"JAX threads {jax_threads if on_cpu else '-'} (XLA:CPU pool: all usable cores), "
          f"PyTorch {tinfo['torch_version'] or 'absent'} on {tinfo['torch_device'] or '-'} with "
          f"{tinfo['torch_threads'] or '-'} threads; width {args.width:g}, {args.dtype} "
          f"(fp32 precision: {args.fp32_precision}), "
          f"median of {args.reps} rep(s); load average {loadavg_start[0]:.2f}"
          + (f" [torch: {torch.error}]" if torch.error else ""), flush=True)

    start_all = time.perf_counter()
    mm_n = 2048 if on_cpu else 8192
    print(f"  matmul {mm_n}x{mm_n} ...", flush=True)
    matmul = common.jax_matmul(mm_n, dtype, args.reps)
    torch_matmul = torch.matmul(mm_n, args.reps) if torch.available else None
    check = None
    if torch.available:
        try:
            check = torch.check(args.width, dtype, args.seed)
        except Exception as e:  # noqa: BLE001 - a failed check is reported, timing goes on
            check = {"error": f"{type(e).__name__}: {e}"}
            traceback.print_exc()
    cases, failed = run_cases(args, torch, dtype, np.random.default_rng(args.seed),
                              jax.random.key(args.seed + 1))
    # The matmul rate again at the end: on a shared machine the better of the two is the rate
    # the device can give; both are stored.
    print(f"  matmul {mm_n}x{mm_n} again ...", flush=True)
    matmul_end = common.jax_matmul(mm_n, dtype, args.reps)
    torch_matmul_end = torch.matmul(mm_n, args.reps) if torch.available else None
    mm_rate = max(matmul["gflops"], matmul_end["gflops"])
    tmm_rate = (None if torch_matmul is None
                else max(torch_matmul["gflops"], torch_matmul_end["gflops"]))
    add_fractions(cases, mm_rate, tmm_rate)
    total = time.perf_counter() - start_all
    fl_wler = common.analytic_flops("wler", args.frames, args.width)
    fl_slat = common.analytic_flops("slat", geometry.SEGMENT_FRAMES, args.width)
    out = {
        "device": device.device_kind, "platform": device.platform,
        "device_count": jax.device_count(),
        "matmul_gflops": mm_rate, "matmul": matmul, "matmul_end": matmul_end,
        "torch_matmul_gflops": tmm_rate, "torch_matmul": torch_matmul,
        "torch_matmul_end": torch_matmul_end,
        "cases": cases, "failed_cases": failed,
        "jax_threads": jax_threads if on_cpu else None, **tinfo,
        "cpu": common.cpu_model(), "cpu_count": os.cpu_count(),
        "loadavg_start": list(loadavg_start), "loadavg_end": list(os.getloadavg()),
        "width": args.width, "dtype": args.dtype, "fp32_precision": args.fp32_precision,
        "conv1_impl": args.conv1_impl,
        "reps": args.reps, "quick": args.quick,
        "num_classes": common.NUM_CLASSES, "learning_rate": common.LEARNING_RATE,
        "statistic": "median wall seconds of reps calls after 1 warm-up call (compiled AOT "
                     "before)",
        "flop_count": "analytic: conv 2*K*K*Cin*Cout*Hout*Wout, dense 2*In*Out; train = "
                      "forward + weight grads (= forward) + input grads (= forward minus the "
                      "first layer); xla_gflop = XLA cost_analysis of the compiled program",
        "analytic_gflop_per_example": {"wler_forward": fl_wler["forward"] / 1e9,
                                       "wler_train": fl_wler["train"] / 1e9,
                                       "slat_forward": fl_slat["forward"] / 1e9,
                                       "slat_train": fl_slat["train"] / 1e9,
                                       "wler_mflop_per_frame_forward":
                                           fl_wler["forward"] / geometry.padded_frames(
                                               args.frames) / 1e6},
        "check": check,
        "jax_version": jax.__version__, "jaxlib_version": importlib.metadata.version("jaxlib"),
        "flax_version": flax.__version__, "optax_version": optax.__version__,
        "numpy_version": np.__version__, "python": platform.python_version(),
        "xla_python_client_mem_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "total_s": total,
    }
    print_tables(out)
    common.write_json(out, args.json, total)


if __name__ == "__main__":
    main()
