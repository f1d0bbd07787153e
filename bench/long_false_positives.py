"""Where a run's harmful false positives on the long *validation* recordings lie: on the
background, or on another class's event?

  python -m bench.long_false_positives --json=bench/results/long_false_positives.json \\
      SWEEP.json [...]

SWEEP.json: `python -m bench.real_mixtures` sweep JSONs (their runs' workdirs must exist here).
For each run and class, a recording without that class counts as a harmful false positive when
its recording score (the max over segments) reaches the median score of the recordings that have
the class: those are the negatives that pull the class's AP down. Its top segment is then either
on the background (no event overlaps it) or on an event of another class. Reads the
`long_val_predictions.json` the sweep wrote and the build's `mixtures_val_events.tsv`; no test
audio and no test figure.
"""
from __future__ import annotations

import argparse
import collections
import json
import os

import numpy as np

from wler_jax.data.mixtures import read_events_tsv


def false_positives(pred_json: str, events_tsv: str) -> dict:
    """{"background", "on_event"} counts, and per-class and per-confusion counts, of one run."""
    with open(pred_json) as f:
        pred = json.load(f)
    events = read_events_tsv(events_tsv)
    per_class, confusions = collections.Counter(), collections.Counter()
    where = {"background": 0, "on_event": 0}
    results = [(r, events.get(os.path.basename(r["file"]), [])) for r in pred["results"]]
    for c in pred["class_names"]:
        positives = [r["scores"][c] for r, ev in results if any(e[2] == c for e in ev)]
        if not positives:
            continue
        bar = float(np.median(positives))
        for r, ev in results:
            if any(e[2] == c for e in ev) or r["scores"][c] < bar:
                continue
            top = max(r["segment_scores"], key=lambda s: s["scores"][c])
            hit = sorted(e[2] for e in ev if e[0] < top["end"] and e[1] > top["start"])
            where["on_event" if hit else "background"] += 1
            per_class[c] += 1
            if hit:
                confusions[f"{hit[0]} -> {c}"] += 1
    return {**where, "per_class": dict(per_class.most_common()),
            "confusions": dict(confusions.most_common())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", metavar="SWEEP.json")
    parser.add_argument("--json", required=True, help="output JSON")
    args = parser.parse_args()
    runs, totals = [], {}
    for path in args.sweeps:
        with open(path) as f:
            sweep = json.load(f)
        for run in sweep["runs"]:
            fp = false_positives(os.path.join(run["workdir"], "long_val_predictions.json"),
                                 os.path.join(run["build_dir"], "mixtures_val_events.tsv"))
            runs.append({"source": os.path.basename(path), "method": run["method"],
                         "config_file": run.get("config_file"),
                         "seed": run["seed"], "fold": run.get("fold"), **fp})
            t = totals.setdefault(run["method"], {"background": 0, "on_event": 0,
                                                  "per_class": collections.Counter()})
            t["background"] += fp["background"]
            t["on_event"] += fp["on_event"]
            t["per_class"].update(fp["per_class"])
    summary = {m: {"background": t["background"], "on_event": t["on_event"],
                   "background_share": round(t["background"]
                                             / max(1, t["background"] + t["on_event"]), 3),
                   "per_class": dict(t["per_class"].most_common())}
               for m, t in sorted(totals.items())}
    print("| method | runs | harmful FPs on background | on another event | background share |")
    print("|---|---|---|---|---|")
    for m, s in summary.items():
        n = sum(r["method"] == m for r in runs)
        print(f"| {m} | {n} | {s['background']} | {s['on_event']} | {s['background_share']} |")
    for m, s in summary.items():
        print(f"{m} by class: {s['per_class']}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"what": __doc__.splitlines()[0], "sweeps": args.sweeps, "runs": runs,
                   "summary": summary}, f, indent=1)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
