"""`python -m bench.compare_wler_slat --merge` (wler_jax.analysis.compare_sweeps.merge) joins
sweeps run apart (methods or seeds split)."""
import json

import pytest

from wler_jax import errors
from wler_jax.analysis import compare_sweeps as compare


def _sweep(path, method, tests, variant="default"):
    runs = [{"method": method, "seed": s, "validation_mAP": t - 0.01, "test_mAP": t,
             "test_mAP_ci95": [t - 0.05, t + 0.05], "best_epoch": 3, "seconds": 10.0}
            for s, t in enumerate(tests)]
    with open(path, "w") as f:
        json.dump({"variant": variant, "epochs": None, "overrides": [], "runs": runs}, f)
    return str(path)


def test_merge_pairs_seeds_across_files(tmp_path, capsys):
    a = _sweep(tmp_path / "w.json", "wler", [0.6, 0.7, 0.5])
    b = _sweep(tmp_path / "s.json", "slat", [0.5, 0.72, 0.4])
    out = compare.merge([a, b], str(tmp_path / "both.json"))
    d = out["summary"]["wler_minus_slat_test"]
    assert d["per_seed"] == pytest.approx([0.1, -0.02, 0.1])
    assert d["wler_wins"] == 2 and d["seeds"] == [0, 1, 2]
    assert out["summary"]["wler"]["test_mAP"]["mean"] == pytest.approx(0.6)
    with open(tmp_path / "both.json") as f:
        assert len(json.load(f)["runs"]) == 6
    assert "WLER wins 2 of 3 seeds" in capsys.readouterr().out


def test_merge_refuses_duplicates_and_unlike_sweeps(tmp_path):
    a = _sweep(tmp_path / "a.json", "wler", [0.6])
    with pytest.raises(errors.DataError, match="in two sweeps"):
        compare.merge([a, a], str(tmp_path / "x.json"))
    b = _sweep(tmp_path / "b.json", "slat", [0.5], variant="smoke")
    with pytest.raises(errors.DataError, match="differs"):
        compare.merge([a, b], str(tmp_path / "x.json"))


def test_merge_keeps_one_recipe_file(tmp_path):
    """Sweeps that name their config file merge only with sweeps of the same file; a sweep
    written before the key existed merges with either."""
    def named(path, method, config_file):
        p = _sweep(path, method, [0.6])
        with open(p) as f:
            sweep = json.load(f)
        if config_file:
            sweep["config_file"] = config_file
        with open(p, "w") as f:
            json.dump(sweep, f)
        return p

    recipe = "configs/experiments/synthetic_cpu.py:{method}"
    a = named(tmp_path / "a.json", "wler", recipe)
    b = named(tmp_path / "b.json", "slat", recipe)
    old = _sweep(tmp_path / "old.json", "wler", [0.5, 0.7])  # seeds 0, 1; no config_file
    with open(old) as f:
        runs = json.load(f)
    runs["runs"] = runs["runs"][1:]  # seed 1 only
    with open(old, "w") as f:
        json.dump(runs, f)
    out = compare.merge([a, b, old], str(tmp_path / "ab.json"))
    assert out["config_file"] == recipe and len(out["runs"]) == 3
    other = named(tmp_path / "c.json", "slat", "configs/{method}.py")
    with pytest.raises(errors.DataError, match="config_file"):
        compare.merge([a, other], str(tmp_path / "x.json"))
