"""Second real benchmark: Kitchen20 kitchen sounds, weak long recordings over real backgrounds.

  python -m bench.kitchen20 --source=K20 --backgrounds=DIR[,DIR] --test_backgrounds=DIR[,DIR] \
      --out=BUILD                                                                      # build
  python -m bench.kitchen20 --source=K20 --backgrounds=... --test_backgrounds=... \
      --out=BUILD --train \
      --methods=wler,slat --seeds=3 [--config=configs/experiments/real_weak.py] \
      [--override=train.epochs=24] --json=bench/results/kitchen20_....json

`--source` is a local copy of the public GitHub repository `marc-moreaux/kitchen20` (1,070 real
clips of 20 kitchen classes, 44.1 kHz mono, <= 5 s, from Freesound and the authors' recordings;
`kitchen20.csv` names each clip's source recording, `usr_id`). `--backgrounds` are folders of
real recordings without those sounds (e.g. street, park, office, bus ambience); nothing is
downloaded, and no audio of either enters the repository. The build (seeded, `--split_seed`):
  * `clips.csv` (path,labels,split,source): every clip, one label; sources split whole (15 %
    test, 15 % validation), so no source is heard on two sides.
  * `--test_backgrounds` (other recordings, ideally other places) only ever under the *test*
    recordings, so tagging is judged over background never heard in training.
  * `weak.csv`: the paper's setting. `--num_weak` training and a fifth as many validation
    recordings of 8-30 s, each 0-3 events of its split placed at random times in an excerpt of
    a training background (15 % background only: an empty label cell), labelled per recording;
    plus the clip test split as its test split.
  * `mixtures/` + `mixtures.csv` + `mixtures_events.tsv`: 60 long test recordings of 10-60 s,
    1-3 *test* events each over a *test* background; `mixtures_val*`: 30 from validation
    events over training backgrounds, for choices made on validation.
Events are trimmed to their active part and mixed at an event-to-background ratio uniform in
[-6, +6] dB, the background at -35 dBFS RMS.

`--train` trains `--methods` x `--seeds` on `weak.csv` (or `--train_set=clips`) with
`--config` (a config file; `:folder,cpu` is the default variant) and scores the clip test split
(results.json) and the long test recordings (the predict CLI, tagging mAP), beside the
log-mel statistics baseline (`wler_jax.training.logmel_baseline`) fitted on the same table.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import soundfile as sf

from wler_jax import audio, evaluate
from wler_jax.configs.common import apply_override, base_config
from wler_jax.geometry import SAMPLE_RATE as SR
from wler_jax.training import config_check, train
from wler_jax.training import logmel_baseline as lb

EBR_DB = (-6.0, 6.0)
BACKGROUND_DBFS = -35.0
WEAK_SECONDS, WEAK_EVENTS, NEGATIVE_FRACTION = (8.0, 30.0), (0, 3), 0.15
MIX_SECONDS, MIX_EVENTS = (10.0, 60.0), (1, 3)
NUM_TEST_MIXTURES, NUM_VAL_MIXTURES = 60, 30
BUILD_VERSION = 1


def read_corpus(source: str) -> list[dict]:
    """Kitchen20's clips: {"path", "label", "source"} from its kitchen20.csv."""
    with open(os.path.join(source, "kitchen20.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    clips = [{"path": os.path.join(source, r["path"]), "label": r["category"],
              "source": r["usr_id"]} for r in rows]
    missing = [c["path"] for c in clips if not os.path.isfile(c["path"])]
    if missing:
        raise SystemExit(f"{len(missing)} clips listed in kitchen20.csv are missing, e.g. "
                         f"{missing[0]}")
    return clips


def split_groups(groups: list[str], seed: int, fractions=(0.15, 0.15)) -> dict[str, str]:
    """Whole groups to test / validation / train, about `fractions` of the items each."""
    order = sorted(set(groups))
    np.random.default_rng(seed).shuffle(order)
    counts = {g: groups.count(g) for g in order}
    out, filled = {}, {"test": 0, "validation": 0}
    for g in order:
        split = next((s for s, f in zip(("test", "validation"), fractions)
                      if filled[s] < f * len(groups)), "train")
        filled[split] = filled.get(split, 0) + counts[g]
        out[g] = split
    return out


def active(x: np.ndarray, floor_db: float = -40.0) -> np.ndarray:
    """`x` without its leading and trailing quiet: 23-ms frames below `floor_db` of the
    loudest frame (clips are padded with silence to 5 s)."""
    n = 1024
    frames = np.sqrt(np.mean(np.square(x[:len(x) // n * n].reshape(-1, n)), 1) + 1e-20)
    on = np.flatnonzero(frames > frames.max() * 10 ** (floor_db / 20))
    return x[on[0] * n:(on[-1] + 1) * n] if len(on) else x


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12


def background_excerpt(bg: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of a background from a random start (looped if shorter), at -35 dBFS RMS."""
    reps = int(np.ceil((n + len(bg)) / len(bg)))
    start = int(rng.integers(0, len(bg)))
    x = np.tile(bg, reps)[start:start + n].astype(np.float64)
    return x * 10 ** (BACKGROUND_DBFS / 20) / _rms(x)


def make_recordings(events: list[dict], backgrounds: list[np.ndarray], out_dir: str, num: int,
                    seed: int, seconds, per_recording, negative_fraction: float = 0.0,
                    prefix: str = "rec") -> list[dict]:
    """Writes `num` recordings of `events` over `backgrounds`; returns their labels and events."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    records = []
    for i in range(num):
        rng = np.random.default_rng([seed, i])
        n = int(rng.uniform(*seconds) * SR)
        x = background_excerpt(backgrounds[int(rng.integers(len(backgrounds)))], n, rng)
        k = 0 if rng.random() < negative_fraction else int(
            rng.integers(max(per_recording[0], 1), per_recording[1] + 1))
        placed = []
        for _ in range(k):
            ev = events[int(rng.integers(len(events)))]
            w = ev["wave"][:n]
            start = int(rng.integers(0, n - len(w) + 1))
            ebr = float(rng.uniform(*EBR_DB))
            x[start:start + len(w)] += 10 ** ((BACKGROUND_DBFS + ebr) / 20) / _rms(w) * w
            placed.append((round(start / SR, 4), round((start + len(w)) / SR, 4), ev["label"]))
        peak = float(np.max(np.abs(x)))
        name = f"{prefix}_{i:03d}.wav"
        sf.write(os.path.join(out_dir, name), (x * min(1.0, 0.99 / peak)).astype(np.float32),
                 SR, subtype="PCM_16")
        records.append({"path": os.path.join(out_dir, name), "duration": n / SR,
                        "labels": sorted({e[2] for e in placed}), "events": sorted(placed)})
    return records


def audio_files(folders: str) -> list[str]:
    """The audio files directly inside comma-separated `folders`, sorted."""
    return sorted(os.path.join(d, f) for d in folders.split(",") for f in os.listdir(d)
                  if audio.is_audio_file(f))


def _write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "labels", "split", "source"])
        w.writeheader()
        for r in rows:
            w.writerow({"path": r["path"], "labels": ";".join(r["labels"]),
                        "split": r.get("split", ""), "source": r.get("source", r["path"])})


def build(args) -> dict:
    """Writes the benchmark under args.out (reused when its manifest matches)."""
    params = {"version": BUILD_VERSION, "split_seed": args.split_seed, "num_weak": args.num_weak,
              "backgrounds": args.backgrounds, "test_backgrounds": args.test_backgrounds}
    manifest_path = os.path.join(args.out, "manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
        if manifest["params"] == params:
            return manifest
    os.makedirs(args.out, exist_ok=True)
    clips = read_corpus(args.source)
    side = split_groups([c["source"] for c in clips], args.split_seed)
    for c in clips:
        c["split"], c["labels"] = side[c["source"]], [c["label"]]
    _write_csv(os.path.join(args.out, "clips.csv"), clips)
    bg = {"train": audio_files(args.backgrounds), "test": audio_files(args.test_backgrounds)}
    if not bg["train"] or not bg["test"]:
        raise SystemExit("--backgrounds and --test_backgrounds each need audio files")
    waves = {s: [audio.load(p) for p in files] for s, files in bg.items()}
    events = {s: [{"label": c["label"], "wave": active(audio.load(c["path"]))}
                  for c in clips if c["split"] == s] for s in ("train", "validation", "test")}
    weak = []
    for split, num, offset in (("train", args.num_weak, 0),
                               ("validation", args.num_weak // 5, 10_000)):
        folder = os.path.join(args.out, f"weak_{split}")
        for r in make_recordings(events[split], waves["train"], folder, num,
                                 args.split_seed + offset, WEAK_SECONDS, WEAK_EVENTS,
                                 NEGATIVE_FRACTION, prefix=f"weak_{split}"):
            weak.append({**r, "split": split})
    _write_csv(os.path.join(args.out, "weak.csv"),
               weak + [c for c in clips if c["split"] == "test"])
    for name, split, bgs, num, offset in (
            ("mixtures", "test", waves["test"], NUM_TEST_MIXTURES, 20_000),
            ("mixtures_val", "validation", waves["train"], NUM_VAL_MIXTURES, 30_000)):
        recs = make_recordings(events[split], bgs, os.path.join(args.out, name), num,
                               args.split_seed + offset, MIX_SECONDS, MIX_EVENTS, prefix="mix")
        _write_csv(os.path.join(args.out, f"{name}.csv"), recs)
        with open(os.path.join(args.out, f"{name}_events.tsv"), "w") as f:
            f.write("filename\tonset\toffset\tevent_label\n")
            for r in recs:
                for on, off, label in r["events"]:
                    f.write(f"{os.path.basename(r['path'])}\t{on}\t{off}\t{label}\n")
    counts = {s: sum(c["split"] == s for c in clips) for s in ("train", "validation", "test")}
    manifest = {"params": params, "clips": counts, "backgrounds": bg,
                "weak": {s: sum(r["split"] == s for r in weak) for s in ("train", "validation")}}
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def long_tagging(workdir: str, out: str, name: str, class_names: list[str]) -> dict:
    """Tagging mAP of the predict CLI (as users run it) on the build's `name` recordings."""
    pred_json = os.path.join(workdir, f"{name}_predictions.json")
    subprocess.run([sys.executable, "-m", "wler_jax.predict", f"--workdir={workdir}",
                    f"--output={pred_json}", "--noprogress", os.path.join(out, name)], check=True)
    with open(pred_json) as f:
        pred = json.load(f)
    table = lb.read_table(os.path.join(out, f"{name}.csv"))
    by_file = {os.path.basename(r["file"]): r["scores"] for r in pred["results"]}
    scores = np.array([[by_file[os.path.basename(p)][c] for c in class_names]
                       for p in table.paths])
    y = table.multi_hot(class_names)
    return {"mAP": evaluate.average_precision(y, scores, class_names)["mAP"],
            "mAP_ci95": evaluate.bootstrap_map_ci(y, scores)}


def load_recipe(config_file: str | None, method: str):
    """`get_config(arg)` of a config file `path[:arg]` with `method` set, or the folder
    dataset's cpu preset (`configs/<method>.py:folder,cpu`) without one."""
    if not config_file:
        return base_config(method, "folder,cpu")
    path, _, arg = config_file.partition(":")
    spec = importlib.util.spec_from_file_location("recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    config.method = method
    return config


def train_run(method: str, seed: int, args) -> dict:
    config = load_recipe(args.config, method)
    config.seed = seed
    config.data.path = os.path.join(args.out, f"{args.train_set}.csv")
    config.data.data_dir = os.path.join(args.out, "tfds")
    for assignment in args.override:
        apply_override(config, assignment)
    config_check.validate(config)
    workdir = os.path.join(args.out, "runs", args.tag, f"{method}_seed{seed}")
    if os.path.isdir(workdir) and not args.resume:
        shutil.rmtree(workdir)
    t0 = time.time()
    results = train.train_and_evaluate(config, workdir)
    run = {"method": method, "seed": seed, "best_epoch": results["best_epoch"],
           "validation_mAP": results["validation"]["mAP"], "test_mAP": results["test"]["mAP"],
           "test_mAP_ci95": results["test"].get("mAP_ci95"),
           "train_seconds": round(time.time() - t0, 1), "workdir": workdir}
    with open(os.path.join(workdir, "run.json")) as f:
        names = json.load(f)["class_names"]
    run["long_val_tagging"] = long_tagging(workdir, args.out, "mixtures_val", names)
    run["long_tagging"] = long_tagging(workdir, args.out, "mixtures", names)
    print(f"[{method} seed {seed}] clip val {run['validation_mAP']:.3f} test "
          f"{run['test_mAP']:.3f}; long val {run['long_val_tagging']['mAP']:.3f} test "
          f"{run['long_tagging']['mAP']:.3f} ({run['train_seconds']:.0f} s)", flush=True)
    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", required=True, help="local copy of marc-moreaux/kitchen20")
    p.add_argument("--backgrounds", required=True,
                   help="folders of real background recordings for training and validation")
    p.add_argument("--test_backgrounds", required=True,
                   help="folders of other real background recordings, only under the test ones")
    p.add_argument("--out", required=True, help="build and run folder (outside the repo)")
    p.add_argument("--split_seed", type=int, default=0)
    p.add_argument("--num_weak", type=int, default=240, help="weak training recordings")
    p.add_argument("--train", action="store_true")
    p.add_argument("--train_set", default="weak", choices=("weak", "clips"))
    p.add_argument("--methods", default="wler,slat")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first_seed", type=int, default=0)
    p.add_argument("--config", default=None, help="config file[:variant] of the recipe")
    p.add_argument("--override", action="append", default=[], help="field=value, repeatable")
    p.add_argument("--tag", default="default", help="run folder name under OUT/runs")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    manifest = build(args)
    print(json.dumps({k: manifest[k] for k in ("clips", "weak")}))
    if not args.train:
        return
    runs = [train_run(m, s, args) for s in range(args.first_seed, args.first_seed + args.seeds)
            for m in args.methods.split(",")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"benchmark": "kitchen20", "manifest": manifest, "args": vars(args),
                       "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
