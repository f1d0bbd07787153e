"""Latency of live tagging (`wler_jax.serving.stream.StreamTagger`) on this machine.

A segment's report waits for three things, measured or stated separately:
  * audio: segment k is final once 512 (32k + 163) samples have arrived, 35 hops (0.406 s)
    after its 128-frame window ends (`stream.ready_samples`; fixed by the receptive field);
  * the block: a live source hands over a block when its last sample is captured, so the
    sample completing a segment waits up to one block (`--block_ms`) before it is pushed;
  * compute: the wall time of the `push` call that delivered it (chunk STFT, network, host),
    measured here warm (the chunk shapes are compiled by a first stream), blocks pushed
    back to back (the audio is synthetic, so nothing waits for real time).
Also: the real-time factor (compute seconds per audio second) and the largest number of
samples the tagger held (its memory bound). The model is random (timing does not depend on
the weights), WLER at `--width`, 10 classes; 16 kHz input goes through the soxr resampler.

Usage:
  python -m bench.stream_latency [--width 0.25] [--seconds 60] [--block_ms 10 100 1000]
      [--rates 44100 16000] [--json PATH]
Results: a table on stdout and JSON in bench/results/stream_latency_<device>.json.
"""
from __future__ import annotations

import argparse
import datetime
import os
import time

import jax
import numpy as np

from bench import common
from bench.common import NUM_CLASSES, noise_and_tones
from wler_jax.geometry import HOP_LENGTH, SAMPLE_RATE, SEGMENT_FRAMES, SEGMENT_HOP
from wler_jax.model.spec import ModelSpec
from wler_jax.serving import stream


def run_stream(spec, params, audio: np.ndarray, rate: int, block: int) -> dict:
    tagger = stream.StreamTagger(spec, params, sample_rate=rate)
    compute, held, reported = [], 0, 0
    start = time.perf_counter()
    for i in range(0, audio.size, block):
        t0 = time.perf_counter()
        segments = tagger.push(audio[i:i + block])
        dt = time.perf_counter() - t0
        if segments:
            compute += [dt] * len(segments)
            reported += len(segments)
        held = max(held, tagger.held_samples)
    tail = tagger.close()
    total = time.perf_counter() - start
    return {"compute_s": compute, "total_s": total, "held_samples": held,
            "segments": reported + len(tail), "shapes": sorted(tagger.shapes_compiled)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--block_ms", type=float, nargs="+", default=[10.0, 100.0, 1000.0])
    p.add_argument("--rates", type=int, nargs="+", default=[SAMPLE_RATE, 16_000])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    t_start = time.time()
    spec = ModelSpec("wler", NUM_CLASSES, args.width)
    params = common.random_params(spec)
    audio_wait_s = (SEGMENT_HOP + CONTEXT_AFTER) * HOP_LENGTH / SAMPLE_RATE
    rows = []
    for rate in args.rates:
        audio = noise_and_tones(int(args.seconds * rate), seed=1)
        for block_ms in args.block_ms:
            block = max(1, int(round(block_ms * rate / 1000)))
            run_stream(spec, params, audio, rate, block)  # compile every shape it will use
            r = run_stream(spec, params, audio, rate, block)
            c = np.array(r["compute_s"])
            rows.append({"sample_rate": rate, "block_ms": block_ms, "block_samples": block,
                         "segments": r["segments"], "compute_p50_ms": 1e3 * np.median(c),
                         "compute_p95_ms": 1e3 * np.percentile(c, 95),
                         "compute_max_ms": 1e3 * c.max(),
                         "real_time_factor": r["total_s"] / args.seconds,
                         "audio_wait_after_window_s": audio_wait_s,
                         "worst_case_latency_s": audio_wait_s + block_ms / 1000 + c.max(),
                         "held_samples_max": r["held_samples"], "chunk_shapes": r["shapes"]})
    print(f"\nStreaming latency, WLER width {args.width}, {args.seconds:.0f}-s stream, "
          f"{jax.devices()[0].device_kind}:")
    print("| input rate | block | compute p50 / p95 / max (ms) | real-time factor | "
          "worst case after the window ends (s) | samples held |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sample_rate']} Hz | {r['block_ms']:g} ms | {r['compute_p50_ms']:.1f} / "
              f"{r['compute_p95_ms']:.1f} / {r['compute_max_ms']:.1f} | "
              f"{r['real_time_factor']:.3f} | {r['worst_case_latency_s']:.3f} | "
              f"{r['held_samples_max']} |")
    out = {"benchmark": "stream_latency", "date": datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"), "device": jax.devices()[0].device_kind,
        "cpu": common.cpu_model(), "jax": jax.__version__, "width": args.width,
        "seconds": args.seconds, "segment_frames": SEGMENT_FRAMES,
        "ready_rule": "segment k final at 512 * (32k + 163) samples (44.1 kHz)", "rows": rows}
    path = args.json or os.path.join(common.RESULTS_DIR, "stream_latency_"
                                     f"{common.device_slug(jax.devices()[0].platform)}.json")
    common.write_json(out, path, time.time() - t_start)


CONTEXT_AFTER = 3  # hops: 512 (32k + 163) - 512 (32k + 128) = 35 hops = 32 + 3


if __name__ == "__main__":
    main()
