"""Per-class thresholds fitted on validation against the fixed 0.5, over several seeds' runs.

  python -m bench.calibration_ab --build=BUILD WORKDIR [WORKDIR ...] --json=OUT.json

Reads each finished workdir (results.json's test calibration: clip F1 at 0.5 and at the fitted
thresholds) and, with `--build` (a real benchmark's build folder, `python -m bench.kitchen20`),
the tags of its long test recordings (`mixtures_predictions.json`) at both operating points;
prints the paired difference over the runs with its 95 % t-interval.
"""
from __future__ import annotations

import argparse
import json

from wler_jax.analysis.seed_summary import calibration_ab


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdirs", nargs="+")
    p.add_argument("--build", default=None, help="the benchmark's build folder (long recordings)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    result = calibration_ab(args.workdirs, args.build)
    for figure, s in result["summary"].items():
        d = s["fitted_minus_fixed"]
        ci = "" if d["ci95"] is None else f" [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        print(f"{figure}: fixed 0.5 {s['fixed']['mean']:.3f}, fitted {s['fitted']['mean']:.3f}; "
              f"fitted - fixed {d['mean']:+.3f} ± {d['std']:.3f}{ci} "
              f"(per seed {', '.join(f'{x:+.3f}' for x in d['per_seed'])})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
