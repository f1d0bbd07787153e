"""MODEL_CARD.md: what a finished workdir's model was trained on and how well it did, in words.

Written by `calibration.finish_workdir` at the end of training (or post hoc) from run.json,
results.json and the fitted thresholds: the data (name, classes, counts per split and per
class), the recipe (method, config, seed, epochs, wall time, device), the results with their
bootstrap intervals, the calibrated thresholds and the known limits (input sample rate, the
clip lengths seen in training).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional

import jax
import numpy as np

from wler_jax import predict
from wler_jax.data import splits
from wler_jax.geometry import SAMPLE_RATE


def _f(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    value = float(value)
    return "-" if np.isnan(value) else f"{value:.{digits}f}"


def _wall_time(workdir: str, in_training: bool) -> str:
    """run.json (written when a session starts) to now (at the end of training) or to
    results.json (written at its end; post hoc)."""
    try:
        end = time.time() if in_training else os.path.getmtime(
            os.path.join(workdir, "results.json"))
        seconds = end - os.path.getmtime(os.path.join(workdir, "run.json"))
    except OSError:
        return "not recorded"
    return (f"{seconds / 60:.1f} min (the last session: from run.json to results.json; a "
            "resumed run's earlier sessions are not counted)")


def render(workdir: str, run: dict, results: dict, tables: dict,
           train_lengths: Optional[np.ndarray] = None, in_training: bool = True) -> str:
    """The card's Markdown (`tables`: split -> `splits.SplitTable` of the evaluated splits)."""
    config, data = run["config"], run.get("data", {})
    class_names = list(run["class_names"])
    dataset = data.get("name", config["data"]["name"])
    lines = [f"# Model card: {config['method'].upper()} on {dataset}",
             "", f"Workdir `{workdir}`. Load it with `wler_jax.predict.load_model` or score files "
             "with `python -m wler_jax.predict --workdir=DIR FILES...`; embeddings with "
             "`wler_jax.hear` or `python -m wler_jax.embed`.", "", "## Data", ""]
    lines += _data_lines(config, data, class_names, tables)
    lines += _recipe_lines(workdir, config, run.get("ops", {}), results, in_training)
    lines += _results_lines(results)
    lines += _threshold_lines(results.get("thresholds", {}), class_names)
    lines += _limit_lines(config, class_names, train_lengths)
    return "\n".join(lines) + "\n"


def _data_lines(config: dict, data: dict, class_names: list, tables: dict) -> list[str]:
    """The dataset, its recordings per split and a table of positive recordings per class."""
    counts = data.get("num_examples", {})
    lines = [f"- Dataset: `{data.get('name', config['data']['name'])}` (builder "
             f"`{data.get('builder', '-')}`, config `{data.get('config', '-')}`, "
             f"data `{data.get('data_dir', config['data'].get('data_dir'))}`).",
             "- Recordings per split: " + ", ".join(
                 f"{s} {n}" for s, n in sorted(counts.items())) + ".",
             f"- {len(class_names)} classes. Positive recordings per class:"]
    lines += ["", "| class | " + " | ".join(tables) + " |",
              "|---|" + "---|" * len(tables)]
    per_split = {s: splits.multi_hot_labels(t, len(class_names)).sum(0) for s, t in tables.items()}
    lines += [f"| {c} | " + " | ".join(str(int(per_split[s][k])) for s in tables) + " |"
              for k, c in enumerate(class_names)]
    return lines


def _recipe_lines(workdir: str, config: dict, ops: dict, results: dict,
                  in_training: bool) -> list[str]:
    """Method, model, seed, epochs, optimiser, device, wall time and where the config is."""
    return ["", "## Recipe", "",
            f"- Method {config['method'].upper()}, width {config['model']['width']:g}, pooling "
            f"{config['model']['pooling']}, seed {config['seed']}, {config['train']['epochs']} "
            f"epochs (best epoch {results.get('best_epoch', '-')}), optimiser "
            f"{config['train']['optimizer']} at {config['train']['learning_rate']:g}.",
            f"- Device: {ops.get('platform', '-')} (ops {ops.get('resolved', '-')})"
            + (f", {jax.device_count()} x {jax.devices()[0].device_kind}" if in_training
               else "") + ".",
            f"- Wall time: {_wall_time(workdir, in_training)}.",
            "- Config: the workdir's `run.json` holds the resolved config"
            + (f"; command: `{' '.join(['python -m wler_jax.main', *sys.argv[1:]])}`"
               if in_training and os.path.basename(sys.argv[0]) in ("main.py", "__main__.py")
               else "") + "."]


def _results_lines(results: dict) -> list[str]:
    """A row per evaluated split: mAP and its interval, localisation, F1 fixed -> fitted."""
    lines = ["", "## Results", "",
             "Clip-level mAP with a 95 % bootstrap interval over recordings; localisation "
             "metrics where the data has event times; F1 at the fixed threshold and at the "
             "thresholds fitted on validation.", "",
             "| split | mAP | 95 % interval | segment F1 | PSDS1 | PSDS2 | clip F1 (fixed -> "
             "fitted) | segment F1 (fixed -> fitted) |", "|---|---|---|---|---|---|---|---|"]
    for split in ("validation", "test"):
        r = results.get(split)
        if not r:
            continue
        lo, hi = r.get("mAP_ci95", [None, None])
        locm, cal = r.get("localisation") or {}, r.get("calibration") or {}
        lines.append(f"| {split} | {_f(r.get('mAP'))} | {_f(lo)} - {_f(hi)} | "
                     f"{_f(locm.get('segment_f1'))} | {_f(locm.get('psds1'))} | "
                     f"{_f(locm.get('psds2'))} | {_f(cal.get('clip_f1_fixed'))} -> "
                     f"{_f(cal.get('clip_f1_fitted'))} | {_f(cal.get('segment_f1_fixed'))} -> "
                     f"{_f(cal.get('segment_f1_fitted'))} |")
    return lines


def _threshold_lines(fit: dict, class_names: list) -> list[str]:
    """How the thresholds were fitted and a row per class (results.json's "thresholds")."""
    lines = ["", "## Calibrated thresholds", "",
             f"Fitted per class on the {fit.get('fitted_on', 'validation')} split (segment F1 "
             f"where it has true events, else clip F1; classes without a positive keep "
             f"{fit.get('fixed', 0.5):g}), stored in `{predict.THRESHOLDS_FILE}`; "
             "`python -m wler_jax.predict` uses them unless `--threshold` is given.", "",
             "| class | threshold | criterion | validation F1 |", "|---|---|---|---|"]
    for c in class_names:
        lines.append(f"| {c} | {_f(fit.get('thresholds', {}).get(c))} | "
                     f"{fit.get('criterion', {}).get(c, '-')} | "
                     f"{_f(fit.get('fitted_f1', {}).get(c))} |")
    return lines


def _limit_lines(config: dict, class_names: list,
                 train_lengths: Optional[np.ndarray]) -> list[str]:
    """Input rate, time resolution, training clip lengths and crop, the closed class set."""
    lines = ["", "## Known limits", "",
             f"- Input: mono audio at {SAMPLE_RATE} Hz (other rates are resampled, other channel "
             "counts down-mixed); the model saw nothing above 22.05 kHz.",
             "- Scores are per 1.49-s segment every 0.37 s; event edges are known to about a "
             "segment hop at best."]
    if train_lengths is not None and len(train_lengths):
        secs = np.asarray(train_lengths) / SAMPLE_RATE
        lines.append(f"- Training clips were {secs.min():.2f} s to {secs.max():.2f} s long "
                     f"(median {np.median(secs):.2f} s); longer recordings are scored segment by "
                     "segment, but the clip score of a much longer one (max over its segments) "
                     "meets more chances of a false positive than training clips did.")
    crop = config.get("input", {}).get("max_frames")
    if crop:
        lines.append(f"- Training cropped recordings to {crop} frames "
                     f"({crop * 512 / SAMPLE_RATE:.1f} s).")
    lines.append(f"- Only the {len(class_names)} classes above; anything else scores as whichever "
                 "class it resembles most, or none.")
    return lines


def write(workdir: str, run: dict, results: dict, tables: dict, *,
          train_lengths: Optional[np.ndarray] = None, in_training: bool = True) -> str:
    """Write `workdir/MODEL_CARD.md`; returns its path."""
    path = os.path.join(workdir, predict.MODEL_CARD_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(render(workdir, run, results, tables, train_lengths, in_training))
    os.replace(path + ".tmp", path)
    return path
