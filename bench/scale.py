"""How time and memory grow with the corpus: dataset build, a training epoch, predict.

For each corpus size (`--hours`, default 1,10,50) a synthetic folder corpus of 10-s clips
(AudioSet's length; 16-bit 44.1 kHz WAV, 1-3 of 10 labels each, an 80/10/10 split column) is
written and measured, each part in a fresh subprocess so that its peak resident memory (VmHWM)
is its own:
  * build: `registry.build("folder", path=CSV)` (decode, resample check, int16 records): wall
    time, files/s, audio-h per minute, peak memory.
  * train: `train.set_up` of `configs/wler.py:folder,cpu` on the built data (its length scans
    and compile ahead timed), then the first `--train_seconds` of epoch 0 through the training
    loop's own pieces (`input_pipeline.train_batches`, `prefetch_to_device`, the jitted step):
    audio-seconds per second, the epoch's projected time, peak memory; and the input pipeline
    alone (reading and padding, no step) for a third of that time.
  * predict: `python -m wler_jax.predict` over `--predict_files` files of the corpus with a
    random model at the cpu width (speed does not depend on the weights): wall time, audio-s/s,
    peak memory. Once, on the first corpus with that many files (its cost does not depend on
    the corpus).
Time should grow linearly with the hours and peak memory stay flat; the JSON keeps every
figure (with the 1-minute load average before and after each part: on a shared machine the
timings carry it), and the table on stdout is the one in docs/reliability.md. Each corpus and
its build are deleted once measured (`--keep` keeps them).

Usage (nice it on a shared machine):
  nice -n 10 python -m bench.scale [--hours 1,10,50] [--parts build,train,predict]
      [--train_seconds 90] [--predict_files 1000] [--work_dir DIR] [--keep] [--json PATH]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

from bench import common
from wler_jax.geometry import SAMPLE_RATE

CLIP_SECONDS = 10
CLASSES = [f"class_{i}" for i in range(10)]
TEMPLATES = 8  # distinct waveforms the clips are drawn from (generation stays cheap)


# ------------------------------------------------------------------------------- corpus

def write_corpus(root: str, hours: float, seed: int = 0) -> str:
    """`hours` of 10-s clips under `root` and their CSV (path,labels,split); returns the CSV."""
    csv_path = os.path.join(root, "list.csv")
    if os.path.exists(csv_path):
        return csv_path
    rng = np.random.default_rng(seed)
    templates = [common.noise_and_tones(CLIP_SECONDS * SAMPLE_RATE, seed=k)
                 for k in range(TEMPLATES)]
    n = int(round(hours * 3600 / CLIP_SECONDS))
    rows = []
    for i in range(n):
        rel = os.path.join(f"{i // 1000:03d}", f"clip_{i:06d}.wav")
        os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
        gain = rng.uniform(0.3, 1.0)
        sf.write(os.path.join(root, rel), templates[i % TEMPLATES] * gain, SAMPLE_RATE,
                 subtype="PCM_16")
        labels = rng.choice(len(CLASSES), rng.integers(1, 4), replace=False)
        split = "train" if i % 10 < 8 else "validation" if i % 10 == 8 else "test"
        rows.append((rel, ";".join(CLASSES[k] for k in sorted(labels)), split))
    with open(csv_path + ".tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "labels", "split"])
        w.writerows(rows)
    os.replace(csv_path + ".tmp", csv_path)
    return csv_path


# ------------------------------------------------------------------------ child processes

CHILD_PRELUDE = """
import json, os, sys, time
def _peak_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
"""

BUILD_CHILD = CHILD_PRELUDE + """
from wler_jax.data.datasets import registry
t = time.perf_counter()
b = registry.build('folder', data_dir=sys.argv[2], path=sys.argv[1])
print(json.dumps({'build_s': time.perf_counter() - t, 'peak_rss_mb': _peak_mb(),
                  'examples': {s: v.num_examples for s, v in b.info.splits.items()}}))
"""

TRAIN_CHILD = CHILD_PRELUDE + """
import jax
from wler_jax.configs.common import base_config
from wler_jax.data import batch_plan, input_pipeline
from wler_jax.training import train
config = base_config('wler', 'folder,cpu')
config.data.path, config.data.data_dir = sys.argv[1], sys.argv[2]
config.compile_cache_dir = sys.argv[4]
budget = float(sys.argv[5])
t = time.perf_counter()
run, state, meta = train.set_up(config, sys.argv[3])
setup_s = time.perf_counter() - t
t = time.perf_counter()
batch_plan.scan_lengths(run.sources['train'])  # what set_up did for each split, timed alone
scan_s = time.perf_counter() - t
# The input pipeline alone (reading and padding, no step): does reading slow with the corpus?
t, read, read_s = time.perf_counter(), 0, 0.0
for batch in input_pipeline.train_batches(run.sources['train'], run.batchers['train'], 1,
        prefetch=config.input.prefetch, num_threads=config.input.num_threads):
    read += 1
    read_s += float((batch['num_samples']).sum()) / 44100
    if time.perf_counter() - t > budget / 3:
        break
pipeline = read_s / (time.perf_counter() - t)
batches = input_pipeline.train_batches(run.sources['train'], run.batchers['train'], 0,
    prefetch=config.input.prefetch, num_threads=config.input.num_threads)
done, audio_s, warm = 0, [], None
for batch in input_pipeline.prefetch_to_device(batches, config.input.prefetch,
                                               run.batch_sharding):
    state, metrics = run.train_step(state, batch)
    done += 1
    if done == 2:  # the first steps start the pipeline: timed from here
        jax.block_until_ready(metrics['loss'])
        warm = time.perf_counter()
    elif done > 2:
        audio_s.append(metrics['audio_seconds'])
    if warm is not None and time.perf_counter() - warm > budget:
        break
jax.block_until_ready(state.params)
elapsed = time.perf_counter() - warm
seconds = float(sum(jax.device_get(audio_s)))
total = float(run.batchers['train'].lengths.sum()) / 44100
print(json.dumps({'setup_s': setup_s, 'train_length_scan_s': scan_s,
                  'pipeline_audio_s_per_s': pipeline, 'pipeline_batches': read,
                  'steps_timed': done - 2, 'steps_per_epoch': run.steps_per_epoch[0],
                  'audio_s_per_s': seconds / elapsed,
                  'epoch_audio_s': total, 'epoch_projected_s': total / (seconds / elapsed),
                  'peak_rss_mb': _peak_mb()}))
"""

PREDICT_CHILD = CHILD_PRELUDE + """
import atexit, runpy
t = time.perf_counter()
def _report():
    print('SCALE_RESULT ' + json.dumps({'predict_s': time.perf_counter() - t,
                                        'peak_rss_mb': _peak_mb()}), flush=True)
atexit.register(_report)
sys.argv = ['wler_jax.predict'] + sys.argv[1:]
runpy.run_module('wler_jax.predict', run_name='__main__')
"""


def run_child(code: str, *args: str, marker: str | None = None, timeout: int = 36000) -> dict:
    """Runs `code` in a fresh Python with `args`; its last JSON line (after `marker`), with
    the machine's load average before and after (a shared machine's timings carry it)."""
    load_before = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=common.REPO,
                          env=common.repo_env(JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS",
                                                                           "cpu")),
                          capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if marker:
        lines = [ln.split(marker, 1)[1] for ln in lines if marker in ln]
    if not lines:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return {**json.loads(lines[-1]), "load_1min": [load_before, os.getloadavg()[0]]}


def random_workdir(path: str) -> str:
    """A workdir holding a random WLER model at the cpu width for the folder corpus' classes
    (written by the project's own Checkpointer, as tests/test_predict.py does)."""
    import jax

    from wler_jax import checkpoints
    from wler_jax.configs.common import base_config
    from wler_jax.training import train

    config = base_config("wler", "folder,cpu")
    spec = train.create_model(config, len(CLASSES))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: (rng.standard_normal(s.shape) / np.sqrt(
        max(1, int(np.prod(s.shape[:-1]))))).astype(np.float32),
        jax.eval_shape(spec.init, jax.random.key(0)))
    ckpt = checkpoints.Checkpointer(path)
    ckpt.save_best(1, params, {"epoch": 1, "step": 1, "mAP": 0.0})
    ckpt.wait()
    ckpt.close()
    checkpoints.write_run_file(path, {"config": config.to_dict(), "class_names": CLASSES,
                                      "data": {"builder": "bench.scale"}})
    return path


# ---------------------------------------------------------------------------------- main

def measure(hours: float, args, work: str, first: bool) -> dict:
    root = os.path.join(work, f"corpus_{hours:g}h")
    t = time.perf_counter()
    csv_path = write_corpus(root, hours)
    out = {"hours": hours, "clips": int(round(hours * 360)), "write_corpus_s":
           time.perf_counter() - t, "corpus_gb": sum(
               os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root)
               for f in fs) / 1e9}
    data_dir = os.path.join(work, f"tfds_{hours:g}h")
    if "build" in args.parts or "train" in args.parts:
        print(f"[{hours:g} h] build ...", flush=True)
        out["build"] = run_child(BUILD_CHILD, csv_path, data_dir)
        out["build"]["audio_h_per_min"] = hours / (out["build"]["build_s"] / 60)
        out["build"]["files_per_s"] = out["clips"] / out["build"]["build_s"]
    if "train" in args.parts:
        print(f"[{hours:g} h] train ...", flush=True)
        workdir = os.path.join(work, f"train_{hours:g}h")
        shutil.rmtree(workdir, ignore_errors=True)
        out["train"] = run_child(TRAIN_CHILD, csv_path, data_dir, workdir,
                                 os.path.join(work, "jax_cache"), str(args.train_seconds))
    if "predict" in args.parts and first:
        print(f"[{hours:g} h] predict over {args.predict_files} files ...", flush=True)
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
                       if f.endswith(".wav"))[:args.predict_files]
        listing = os.path.join(work, "predict_files.txt")
        workdir = random_workdir(os.path.join(work, "predict_workdir"))
        folder = os.path.join(work, "predict_input")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for f in files:  # links: the CLI takes a folder (1,000 paths would be a long argv)
            os.symlink(f, os.path.join(folder, os.path.basename(f)))
        with open(listing, "w") as f:
            f.write("\n".join(files))
        res = run_child(PREDICT_CHILD, f"--workdir={workdir}", "--noprogress",
                        f"--output={os.path.join(work, 'predictions.json')}",
                        f"--compile_cache_dir={os.path.join(work, 'jax_cache')}", folder,
                        marker="SCALE_RESULT ")
        res.update(files=len(files), audio_s_per_s=len(files) * CLIP_SECONDS / res["predict_s"])
        out["predict"] = res
    if not args.keep:  # one corpus on disk at a time (50 h is 16 GB of WAV, 16 GB built)
        for path in (root, data_dir):
            shutil.rmtree(path, ignore_errors=True)
    return out


def table(rows: list[dict]) -> str:
    head = ("| corpus | clips | build | build peak RSS | train set-up (length scan) | "
            "train audio-s/s (pipeline alone) | epoch (projected) | train peak RSS | load |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        b, t = r.get("build", {}), r.get("train", {})
        cell = lambda d, k, f: f.format(d[k]) if k in d else "—"  # noqa: E731
        lines.append(
            f"| {r['hours']:g} h | {r['clips']} | {cell(b, 'build_s', '{:.0f} s')} | "
            f"{cell(b, 'peak_rss_mb', '{:.0f} MB')} | "
            f"{cell(t, 'setup_s', '{:.0f} s')} ({cell(t, 'train_length_scan_s', '{:.1f} s')}) | "
            f"{cell(t, 'audio_s_per_s', '{:.0f}')} "
            f"({cell(t, 'pipeline_audio_s_per_s', '{:.0f}')}) | "
            f"{cell(t, 'epoch_projected_s', '{:.0f} s')} | "
            f"{cell(t, 'peak_rss_mb', '{:.0f} MB')} | "
            f"{max(b.get('load_1min', [0]) + t.get('load_1min', [0])):.1f} |")
    for r in rows:
        if "predict" in r:
            p = r["predict"]
            lines.append(f"\npredict: {p['files']} files of {CLIP_SECONDS} s in "
                         f"{p['predict_s']:.0f} s ({p['audio_s_per_s']:.0f} audio-s/s), peak "
                         f"RSS {p['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hours", default="1,10,50", help="corpus sizes in hours, comma-separated")
    p.add_argument("--parts", default="build,train,predict")
    p.add_argument("--train_seconds", type=float, default=90.0,
                   help="seconds of epoch 0 timed per size (after two warm-up steps)")
    p.add_argument("--predict_files", type=int, default=1000)
    p.add_argument("--work_dir", default=None, help="corpora and builds (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the corpora and builds")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    args.parts = set(args.parts.split(","))
    hours = [float(h) for h in args.hours.split(",")]
    work = args.work_dir or tempfile.mkdtemp(prefix="wler_scale_")
    os.makedirs(work, exist_ok=True)
    start = time.perf_counter()
    rows = []
    try:
        # predict reads --predict_files clips: from the first corpus that has that many
        predict_at = next((h for h in hours if h * 3600 / CLIP_SECONDS >= args.predict_files),
                          hours[-1])
        for h in hours:
            rows.append(measure(h, args, work, first=(h == predict_at)))
            print(json.dumps(rows[-1], indent=1), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out = {"benchmark": "scale", "cpu": common.cpu_model(), "cores": os.cpu_count(),
           "load_average": os.getloadavg(), "clip_seconds": CLIP_SECONDS, "config":
           "configs/wler.py:folder,cpu", "train_seconds_timed": args.train_seconds,
           "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    print("\n" + table(rows))
    path = args.json or os.path.join(common.RESULTS_DIR, "scale_" + "_".join(
        f"{h:g}h" for h in hours) + ".json")
    common.write_json(out, path, time.perf_counter() - start)


if __name__ == "__main__":
    main()
