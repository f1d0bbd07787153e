"""Latency of `python -m wler_jax.serve` under concurrent uploads on the loopback address.

The server runs as its own process (`python -m wler_jax.serve --workdir=W`, warm-up included,
`--workers` scoring threads); this process is the clients. For each concurrency level N in
`--clients`, N client threads each upload `--requests` recordings back to back (closed loop:
a client sends its next upload when its previous answer arrives), so N requests are in flight
at any time. A request's latency is from sending the first byte of the upload to reading the
whole JSON answer (upload, decode, scoring, record). Recordings are `--seconds` long, 44.1 kHz
16-bit mono WAV (noise, tones and a chirp: speed does not depend on the content), the same bytes
for every request. Per level: latency p50 / p90 / p99 / max (numpy's linear percentiles over all
its requests), requests/s and audio-s/s over the level's wall time, failures. The server's
`/api/status` is read before and after: `compiles_since_warmup` must stay 0.

`--screenshot=PATH` then loads the page in headless Chromium (`/usr/bin/chromium`, driven by
Playwright), uploads one synthetic recording with known events (the project's synthetic
generator) and saves a screenshot of the page.

Usage:
  python -m bench.serve_load --workdir=W [--clients 1 4 16] [--requests 8] [--seconds 10]
      [--workers 2] [--max_seconds 30] [--screenshot docs/serve_page.png] [--json PATH]

Result: bench/results/serve_load_cpu.json (or `--json`).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
import soundfile as sf

from bench import common
from wler_jax.geometry import SAMPLE_RATE

CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wav(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def upload(url: str, body: bytes) -> tuple[float, int]:
    """(seconds from sending to the whole answer read, HTTP status) of one upload."""
    req = urllib.request.Request(url + "/api/predict?name=load.wav", data=body, method="POST",
                                 headers={"Content-Type": "audio/wav"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    return time.perf_counter() - start, status


def start_server(args, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "wler_jax.serve", f"--workdir={args.workdir}",
           f"--port={port}", f"--workers={args.workers}", f"--max_seconds={args.max_seconds}",
           f"--max_pending={max(args.clients) + 1}"]
    proc = subprocess.Popen(cmd, env=common.repo_env(), stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 900
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read()[-2000:]}")
        try:
            get(url + "/api/info")
            return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start in 15 minutes")


def load_level(url: str, body: bytes, clients: int, requests: int, seconds: float) -> dict:
    """N closed-loop clients, `requests` uploads each: latency percentiles and throughput."""
    def client(_):
        return [upload(url, body) for _ in range(requests)]

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - start
    lat = np.array([t for t, s in results if s == 200])
    failed = sum(s != 200 for _, s in results)
    p = (lambda q: float(np.percentile(lat, q))) if lat.size else (lambda q: None)
    return {"clients": clients, "requests": len(results), "failed": failed,
            "p50_s": p(50), "p90_s": p(90), "p99_s": p(99),
            "max_s": float(lat.max()) if lat.size else None, "mean_s": float(lat.mean()),
            "wall_s": wall, "requests_per_s": len(results) / wall,
            "audio_s_per_s": lat.size * seconds / wall, "latencies_s": lat.round(4).tolist()}


def screenshot(url: str, path: str, seconds: float) -> dict:
    """Upload one synthetic recording with known events through the page; save a PNG."""
    from playwright.sync_api import sync_playwright

    from wler_jax.data.datasets import synthetic_audio

    rec = synthetic_audio.generate_recording(20261208, seconds)
    with tempfile.TemporaryDirectory() as tmp:
        audio_path = os.path.join(tmp, "synthetic_street.wav")
        sf.write(audio_path, rec.audio, SAMPLE_RATE, subtype="PCM_16")
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                os.path.join(tmp, "profile"), executable_path=CHROMIUM, headless=True,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                      "--no-first-run", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync"],
                viewport={"width": 1000, "height": 800})
            try:
                page = browser.new_page()
                page.goto(url + "/")
                page.wait_for_function("document.getElementById('model').textContent.includes('classes')")
                page.set_input_files("#file", audio_path)
                page.wait_for_selector("#results:not([hidden])", timeout=120_000)
                page.screenshot(path=path, full_page=True)
            finally:
                browser.close()
    events = [{"label": synthetic_audio.CLASSES[e.label], "onset": round(e.onset, 2),
               "offset": round(e.offset, 2)} for e in rec.events]
    print(f"screenshot: {path} ({os.path.getsize(path) / 1024:.0f} KB); true events {events}")
    return {"path": path, "recording_s": seconds, "true_events": events}


def trained_on(workdir: str) -> dict:
    """What the served model was trained on and for how long (the workdir's run.json)."""
    with open(os.path.join(workdir, "run.json")) as f:
        config = json.load(f)["config"]
    return {"data": config["data"]["name"], "size": config["data"].get("size"),
            "epochs": config["train"]["epochs"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a trained workdir to serve")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=8, help="uploads per client")
    parser.add_argument("--seconds", type=float, default=10.0, help="recording length")
    parser.add_argument("--workers", type=int, default=2, help="the server's --workers")
    parser.add_argument("--max_seconds", type=float, default=30.0,
                        help="the server's --max_seconds (its warm-up compiles up to it)")
    parser.add_argument("--screenshot", default=None, help="also save the page's PNG here")
    parser.add_argument("--json", default=os.path.join(common.RESULTS_DIR,
                                                       "serve_load_cpu.json"))
    args = parser.parse_args()
    if args.seconds > args.max_seconds:
        parser.error("--seconds must be <= --max_seconds")
    total = time.perf_counter()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    proc = start_server(args, port)
    try:
        started_s = time.perf_counter() - start
        info, before = get(url + "/api/info"), get(url + "/api/status")
        print(f"server up in {started_s:.1f} s ({before['compiles_at_warmup']} programs, "
              f"warm-up {before['warmup_seconds']:.1f} s); {info['method']} width "
              f"{info['width']}, {len(info['class_names'])} classes")
        body = wav(common.noise_and_tones(int(args.seconds * SAMPLE_RATE)))
        load_before = os.getloadavg()  # a shared machine: other work slows the server too
        upload(url, body)  # one request before timing (connection set-up, first allocations)
        levels = []
        print(f"\n{'clients':>7} {'requests':>8} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9} "
              f"{'req/s':>6} {'audio-s/s':>9} {'failed':>6}")
        for n in args.clients:
            level = load_level(url, body, n, args.requests, args.seconds)
            levels.append(level)
            print(f"{n:>7} {level['requests']:>8} {common.fmt_s(level['p50_s']):>9} "
                  f"{common.fmt_s(level['p90_s']):>9} {common.fmt_s(level['p99_s']):>9} "
                  f"{common.fmt_s(level['max_s']):>9} {level['requests_per_s']:>6.2f} "
                  f"{level['audio_s_per_s']:>9.1f} {level['failed']:>6}")
        shot = screenshot(url, args.screenshot, 12.0) if args.screenshot else None
        after = get(url + "/api/status")
        load_after = os.getloadavg()
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"compilations after warm-up: {after['compiles_since_warmup']} "
          f"({after['requests']} requests); load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after ({os.cpu_count()} CPUs)")
    out = {"device": "cpu", "cpu": common.cpu_model(), "cpu_count": os.cpu_count(),
           "workdir": os.path.abspath(args.workdir), "trained_on": trained_on(args.workdir),
           "method": info["method"],
           "width": info["width"], "num_classes": len(info["class_names"]),
           "server": {"workers": args.workers, "max_seconds": args.max_seconds,
                      "start_s": started_s, "warmup_s": before["warmup_seconds"],
                      "programs_at_warmup": before["compiles_at_warmup"]},
           "loadavg_1_5_15min_before": load_before, "loadavg_1_5_15min_after": load_after,
           "recording_s": args.seconds, "upload_bytes": len(body), "levels": levels,
           "compiles_since_warmup": after["compiles_since_warmup"],
           "requests_served": after["requests"], "screenshot": shot,
           "python": platform.python_version(), "date": datetime.datetime.now().isoformat(
               timespec="seconds")}
    common.write_json(out, args.json, time.perf_counter() - total)
    if after["compiles_since_warmup"] != 0:
        raise SystemExit("the server compiled after its warm-up")


if __name__ == "__main__":
    main()
