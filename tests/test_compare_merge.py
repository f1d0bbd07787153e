"""bench/compare_wler_slat.py --merge joins sweeps run apart (methods or seeds split)."""
import importlib.util
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location(
    "compare_wler_slat", os.path.join(REPO, "bench", "compare_wler_slat.py"))
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


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
    with pytest.raises(SystemExit, match="in two sweeps"):
        compare.merge([a, a], str(tmp_path / "x.json"))
    b = _sweep(tmp_path / "b.json", "slat", [0.5], variant="smoke")
    with pytest.raises(SystemExit, match="differs"):
        compare.merge([a, b], str(tmp_path / "x.json"))
