"""The ONNX export under onnxruntime (CPU) against `predict_fn` (jitted JAX, CPU), side by side
in one run, and what float16 does to the log-mel front end.

Speed: one recording per call (the ONNX model's batch is 1) at each `--seconds` length, both
warm (a first call compiles / plans), median over `--reps` calls; seconds of audio scored per
second. Both run the same random WLER model (`--width`, 10 classes; speed does not depend on
the weights), features computed inside, all threads the process has (onnxruntime's default,
XLA:CPU's default). The front ends alone are timed too (the ONNX operators' STFT against
`features.multi_scale_log_mel` jitted).

float16: the front end built in half precision (`export_onnx.frontend_graph(np.float16)`,
run by onnxruntime) against the float32 `features.log_mel`: the share of non-finite values
(power above 65504 overflows; the 1e-10 floor underflows to 0, so silent bands give -inf) and
the dB error of the finite ones, per scale; then the network's scores on those features.

Usage:
  python -m bench.onnx_speed [--width 0.25 1.0] [--seconds 10 60] [--reps 5] [--json PATH]
Results: a table on stdout and JSON in bench/results/onnx_speed_<device>.json.
"""
from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time

import jax
import numpy as np

from bench import common
from bench.common import NUM_CLASSES, noise_and_tones
from wler_jax import export_onnx, features, predict
from wler_jax.geometry import N_FFTS, SAMPLE_RATE, num_segments
from wler_jax.model.spec import ModelSpec
from wler_jax.serving import inference


def random_model(width: float, seed: int = 0) -> predict.Model:
    """A WLER model with numpy-drawn LeCun-normal weights (no init compile)."""
    spec = ModelSpec("wler", NUM_CLASSES, width)
    return predict.Model(common.random_params(spec, seed),
                         tuple(f"c{i}" for i in range(NUM_CLASSES)), None,
                         lambda p, b: inference.predict(spec, p, b), spec)


def median_time(fn, reps: int) -> float:
    """Median seconds of `fn()` (which blocks on its result) after one warm-up call."""
    return float(common.time_calls(fn, reps, sync=lambda _: None)["median"])


def speed(model, session, front, seconds: float, reps: int) -> dict:
    x = noise_and_tones(int(seconds * SAMPLE_RATE), seed=2)
    audio, num_samples = export_onnx.pad_audio(x)
    feeds = {"audio": audio, "num_samples": num_samples}
    batch = {"audio": x[None], "num_samples": np.array([x.size])}
    t_jax = median_time(lambda: jax.block_until_ready(model.predict_fn(model.params, batch)),
                        reps)
    t_onnx = median_time(lambda: session.run(None, feeds), reps)
    t_front = median_time(lambda: front.run(None, feeds), reps)
    t_front_jax = median_time(lambda: jax.block_until_ready(_log_mel(audio, num_samples)), reps)
    ref = jax.device_get(model.predict_fn(model.params, batch))
    clip, segs = session.run(None, feeds)
    s = num_segments(1 + x.size // 512)
    return {"seconds": seconds, "predict_fn_s": t_jax, "onnxruntime_s": t_onnx,
            "onnxruntime_front_end_s": t_front, "jax_front_end_s": t_front_jax,
            "predict_fn_audio_s_per_s": seconds / t_jax, "onnxruntime_audio_s_per_s":
            seconds / t_onnx, "onnx_over_jax": t_onnx / t_jax,
            "max_abs_diff_segments": float(np.abs(segs[0, :s] - ref["segments"][0, :s]).max()),
            "max_abs_diff_clip": float(np.abs(clip - ref["clip"]).max())}


_log_mel = jax.jit(features.multi_scale_log_mel)


def float16_front_end(model, session_cls) -> dict:
    """The half-precision front end against float32 log_mel, and the scores it leads to."""
    front16 = session_cls(export_onnx.frontend_graph(np.float16).SerializeToString(),
                          providers=["CPUExecutionProvider"])
    out = {}
    for name, gain in (("full_scale", 1.0), ("quiet_-40dB", 0.01)):
        x = gain * noise_and_tones(10 * SAMPLE_RATE, seed=3)
        audio, num_samples = export_onnx.pad_audio(x)
        f16, nf = front16.run(None, {"audio": audio, "num_samples": num_samples})
        f32 = np.asarray(features.multi_scale_log_mel(audio, num_samples)[0])
        per_scale = {}
        for k, n_fft in enumerate(N_FFTS):
            finite = np.isfinite(f16[k])
            err = np.abs(f16[k][finite] - f32[k][finite])
            per_scale[str(n_fft)] = {
                "non_finite_share": float(1 - finite.mean()),
                "pos_inf_share": float(np.isposinf(f16[k]).mean()),
                "neg_inf_share": float(np.isneginf(f16[k]).mean()),
                "finite_db_err_median": float(np.median(err)) if err.size else None,
                "finite_db_err_max": float(err.max()) if err.size else None}
        scores = jax.device_get(model.predict_fn(model.params, {
            "features": f16, "num_frames": nf}))
        ref = jax.device_get(model.predict_fn(model.params, {"features": f32, "num_frames": nf}))
        seg = scores["segments"][0]
        out[name] = {"scales": per_scale, "nan_score_share": float(np.isnan(seg).mean()),
                     "max_abs_score_diff_finite": float(np.nanmax(np.abs(
                         seg - ref["segments"][0]))) if not np.isnan(seg).all() else None}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=float, nargs="+", default=[0.25, 1.0])
    p.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    import onnxruntime as ort

    t_start = time.time()
    rows, fp16 = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.width:
            model = random_model(width)
            path = os.path.join(tmp, f"w{width}.onnx")
            t0 = time.perf_counter()
            export_onnx.export_onnx(model, path)
            export_s = time.perf_counter() - t0
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            front = ort.InferenceSession(export_onnx.frontend_graph().SerializeToString(),
                                         providers=["CPUExecutionProvider"])
            for seconds in args.seconds:
                rows.append({"width": width, "export_s": export_s,
                             "onnx_mb": os.path.getsize(path) / 2 ** 20,
                             **speed(model, session, front, seconds, args.reps)})
            if fp16 is None:
                fp16 = float16_front_end(model, ort.InferenceSession)
    print(f"\nONNX (onnxruntime {ort.__version__}, CPU) vs predict_fn (jax {jax.__version__}, "
          f"CPU), one recording per call, {common.cpu_model()}:")
    print("| width | audio | predict_fn (s) | onnxruntime (s) | onnx / jax | front end: jax / "
          "onnxruntime (s) | max |diff| |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['width']:g} | {r['seconds']:g} s | {r['predict_fn_s']:.3f} | "
              f"{r['onnxruntime_s']:.3f} | {r['onnx_over_jax']:.2f} | "
              f"{r['jax_front_end_s']:.3f} / {r['onnxruntime_front_end_s']:.3f} | "
              f"{max(r['max_abs_diff_segments'], r['max_abs_diff_clip']):.1e} |")
    print("\nfloat16 front end (share of non-finite log-mel values per scale):")
    for name, v in fp16.items():
        print(f"  {name}: " + ", ".join(f"{k}: {s['non_finite_share']:.1%}"
                                          for k, s in v["scales"].items())
              + f"; NaN scores {v['nan_score_share']:.1%}")
    out = {"benchmark": "onnx_speed", "date": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"), "cpu": common.cpu_model(),
        "cpu_count": os.cpu_count(), "jax": jax.__version__, "onnxruntime": ort.__version__,
        "reps": args.reps, "rows": rows, "float16_front_end": fp16}
    path = args.json or os.path.join(common.RESULTS_DIR, "onnx_speed_cpu.json")
    common.write_json(out, path, time.time() - t_start)


if __name__ == "__main__":
    main()
