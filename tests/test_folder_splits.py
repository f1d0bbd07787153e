"""Splits users have: train/test without validation, a source/group column, split sub-trees.

The folder/CSV builder carves a seeded, grouped ~15 % validation split from train when a split
column (or a split folder tree) lists train and test but no validation, groups every split it
makes by the optional `source`/`group` column, and records what it did.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import corpus_fixtures as cf
from wler_jax.data.datasets import common
from wler_jax.data.datasets import folder
from wler_jax.data.datasets import registry


def _rows(n_groups: int, per_group, split: str = "", seed: int = 0) -> list[folder.Row]:
    """Rows of `n_groups` sources, each with a varying number of clips (1..per_group)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for k in range(int(rng.integers(1, per_group + 1))):
            rows.append(folder.Row(id=f"src{g:03d}_clip{k}.wav", path=f"/x/src{g:03d}_{k}.wav",
                                   labels=("a",), split=split, group=f"src{g:03d}"))
    return rows


def _split_of_groups(rows, splits):
    by_group = {}
    for r in rows:
        by_group.setdefault(r.group, set()).add(splits[r.id])
    return by_group


def test_carved_validation_is_seeded_grouped_disjoint_and_about_15_percent():
    train = _rows(60, 5, "train")
    test = [folder.Row(id=f"t{i}.wav", path=f"/x/t{i}.wav", labels=("a",), split="test",
                       group=f"test_src{i}") for i in range(20)]
    rows = train + test
    plan = folder.plan_splits(rows, seed=3)
    again = folder.plan_splits(list(reversed(rows)), seed=3)  # listing order does not matter
    assert plan.splits == again.splits and plan.carved == again.carved
    other = folder.plan_splits(rows, seed=4)
    assert other.carved != plan.carved
    # Test rows are untouched; validation only takes train rows.
    assert all(plan.splits[r.id] == "test" for r in test)
    assert set(plan.carved) == {rid for rid, s in plan.splits.items() if s == "validation"}
    assert set(plan.carved) <= {r.id for r in train}
    # Whole groups: no group straddles train and validation.
    assert all(len(s) == 1 for s in _split_of_groups(train, plan.splits).values())
    assert sorted(plan.carved_groups) == sorted(
        {r.group for r in train if plan.splits[r.id] == "validation"})
    frac = len(plan.carved) / len(train)
    assert 0.10 <= frac <= 0.20, frac
    assert "carved" in plan.method and plan.num_groups == 80
    # Every row has exactly one split.
    assert set(plan.splits) == {r.id for r in rows}


def test_carve_without_groups_and_with_a_single_train_group():
    rows = [folder.Row(id=f"{i}.wav", path=f"/x/{i}.wav", labels=("a",),
                       split="train" if i < 40 else "test") for i in range(50)]
    plan = folder.plan_splits(rows, seed=0)
    assert len(plan.carved) == 6  # round(0.15 * 40), one clip per group
    # One train source only: nothing can be carved without emptying train.
    one = [folder.Row(id=f"{i}.wav", path="/x", labels=("a",), split="train", group="g")
           for i in range(5)] + [folder.Row(id="t.wav", path="/x", labels=("a",), split="test")]
    plan = folder.plan_splits(one, seed=0)
    assert plan.carved == [] and "validation" not in plan.splits.values()


def test_seeded_70_15_15_split_is_grouped():
    rows = _rows(50, 6)
    plan = folder.plan_splits(rows, seed=1)
    assert plan.splits == folder.plan_splits(rows, seed=1).splits
    assert all(len(s) == 1 for s in _split_of_groups(rows, plan.splits).values())
    counts = {s: sum(v == s for v in plan.splits.values()) for s in common.SPLITS}
    n = len(rows)
    for split, frac in (("validation", 0.15), ("test", 0.15)):
        assert abs(counts[split] / n - frac) < 0.06, counts
    assert counts["train"] / n > 0.6
    assert plan.carved == [] and "70/15/15" in plan.method


def test_ungrouped_70_15_15_split_is_unchanged():
    """Without a group column each recording is its own group: the split of earlier versions."""
    rows = [folder.Row(id=f"f{i:02d}.wav", path="/x", labels=("a",)) for i in range(23)]

    def old(rows, seed):  # the pre-grouping algorithm, verbatim
        free = sorted(r.id for r in rows)
        n = len(free)
        n_val = max(1, int(round(0.15 * n)))
        n_test = max(1, int(round(0.15 * n)))
        out = {}
        for rank, i in enumerate(np.random.default_rng(seed).permutation(n)):
            out[free[i]] = ("test" if rank < n_test else
                            "validation" if rank < n_test + n_val else "train")
        return out

    for seed in range(5):
        assert folder.assign_splits(rows, seed) == old(rows, seed)
    assert set(folder.assign_splits(rows[:3], 0).values()) == {"train", "validation", "test"}
    assert set(folder.assign_splits(rows[:2], 0).values()) == {"train", "test"}
    assert set(folder.assign_splits(rows[:1], 0).values()) == {"train"}


def test_unlisted_rows_join_their_groups_listed_split():
    rows = [folder.Row(id="a1", path="/x", labels=("a",), split="test", group="A"),
            folder.Row(id="a2", path="/x", labels=("a",), split="", group="A")] + _rows(10, 2)
    plan = folder.plan_splits(rows, seed=0)
    assert plan.splits["a2"] == "test"
    assert all(len(s) == 1 for s in _split_of_groups(rows, plan.splits).values())


def _write_clips(root, n_sources=12, clips_per_source=2, labels=("dog", "rain")):
    """(rows of path,label,source) of tiny real WAV files under root/clips."""
    out = []
    for s in range(n_sources):
        for k in range(clips_per_source):
            rel = f"clips/s{s:02d}_{k}.wav"
            cf.write_audio(os.path.join(root, rel), 0.4, 22050, seed=s * 10 + k)
            out.append((rel, labels[(s + k) % len(labels)], f"source{s:02d}"))
    return out


def _write_csv(path, header, lines):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n" + "".join(",".join(l) + "\n" for l in lines))
    return path


def test_train_test_csv_gets_a_grouped_carved_validation_split_recorded(tmp_path):
    root = str(tmp_path / "data")
    clips = _write_clips(root, n_sources=16)
    lines = [(p, l, "test" if int(s[-2:]) >= 13 else "train", s) for p, l, s in clips]
    csv_path = _write_csv(os.path.join(root, "list.csv"), ["path", "labels", "split", "source"],
                          lines)
    data_dir = str(tmp_path / "tfds")
    sources, names, info = registry.load_splits("folder", data_dir=data_dir, path=csv_path,
                                                seed=0)
    assert set(sources) == {"train", "validation", "test"}
    record = common.read_json(info["split_file"])
    carved = record["carved_validation"]
    assert carved["from"] == "train" and carved["fraction"] == 0.15 and carved["seed"] == 0
    assert sorted(carved["ids"]) == record["splits"]["validation"]
    assert record["grouping"]["column"] == "source" and record["grouping"]["num_groups"] == 16
    assert "carved" in record["method"]
    group = {p: g for p, _, _, g in lines}
    placed = {rid: s for s, ids in record["splits"].items() for rid in ids}
    for g in set(group.values()):
        assert len({placed[p] for p, gg in group.items() if gg == g}) == 1, g
    assert set(carved["groups"]) == {group[p] for p in carved["ids"]}
    assert record["splits"]["test"] == sorted(p for p, _, s, _ in lines if s == "test")
    # Changing the source column (values, or its name) changes the build.
    regroup = [(p, l, s, "one_source" if g in ("source00", "source01") else g)
               for p, l, s, g in lines]
    _write_csv(csv_path, ["path", "labels", "split", "source"], regroup)
    _, _, info2 = registry.load_splits("folder", data_dir=data_dir, path=csv_path, seed=0)
    assert info2["config"] != info["config"]
    _write_csv(csv_path, ["path", "labels", "split", "group"], lines)
    _, _, info3 = registry.load_splits("folder", data_dir=data_dir, path=csv_path, seed=0)
    assert info3["config"] not in (info["config"], info2["config"])
    assert common.read_json(info3["split_file"])["grouping"]["column"] == "group"


def test_split_folder_tree_and_the_label_named_train_rule(tmp_path):
    tree = tmp_path / "tree"
    for split, n in (("train", 6), ("test", 2)):
        for label in ("dog", "rain"):
            for i in range(n):
                cf.write_audio(str(tree / split / label / f"{label}{i}.wav"), 0.3, 22050,
                               seed=i)
    assert folder.is_split_tree(str(tree))
    sources, names, info = registry.load_splits("folder", data_dir=str(tmp_path / "tfds"),
                                                path=str(tree), seed=0)
    assert names == ["dog", "rain"]
    assert set(sources) == {"train", "validation", "test"}
    record = common.read_json(info["split_file"])
    assert record["layout"] == "split_tree"
    assert all(rid.startswith("test/") for rid in record["splits"]["test"])
    assert all(rid.startswith("train/") for rid in record["splits"]["validation"])
    assert record["counts"]["validation"] == 2  # round(0.15 * 12)
    # Labels that happen to be called train and test, files directly inside: labels.
    labels = tmp_path / "labels"
    for label in ("train", "test"):
        for i in range(3):
            cf.write_audio(str(labels / label / f"{i}.wav"), 0.3, 22050, seed=i)
    assert not folder.is_split_tree(str(labels))
    _, names2, info2 = registry.load_splits("folder", data_dir=str(tmp_path / "tfds"),
                                            path=str(labels), seed=0)
    assert names2 == ["test", "train"]
    assert common.read_json(info2["split_file"])["layout"] == "folder"


def test_train_test_only_csv_trains_end_to_end(tmp_path):
    """The layout users have most often (train + test, no validation) trains and evaluates."""
    import sys

    from wler_jax.configs.common import base_config
    from wler_jax.training import train

    root = str(tmp_path / "data")
    clips = _write_clips(root, n_sources=10)
    lines = [(p, l, "test" if int(s[-2:]) >= 8 else "train", s) for p, l, s in clips]
    csv_path = _write_csv(os.path.join(root, "list.csv"), ["path", "labels", "split", "source"],
                          lines)
    config = base_config("wler", "folder,smoke")
    config.data.path = csv_path
    config.data.data_dir = str(tmp_path / "tfds")
    config.train.epochs = 1
    config.model.width = 0.125
    results = train.train_and_evaluate(config, str(tmp_path / "work"))
    assert set(results) >= {"validation", "test"}
    assert 0.0 <= results["validation"]["mAP"] <= 1.0 and 0.0 <= results["test"]["mAP"] <= 1.0


def test_train_only_csv_is_refused_with_the_rule(tmp_path):
    import sys

    from wler_jax.configs.common import base_config
    from wler_jax.data import splits

    root = str(tmp_path / "data")
    clips = _write_clips(root, n_sources=3, clips_per_source=1)
    csv_path = _write_csv(os.path.join(root, "list.csv"), ["path", "labels", "split"],
                          [(p, l, "train") for p, l, _ in clips])
    config = base_config("wler", "folder,smoke")
    config.data.path = csv_path
    config.data.data_dir = str(tmp_path / "tfds")
    with pytest.raises(ValueError, match="no \\['validation'\\].*carved from train"):
        splits.load(config)
