"""Concurrent runs on one machine build a dataset config once instead of racing on it.

A sweep that starts several runs at once used to fail in all but one of them: tfds renames a
finished build into place and raises FileExistsError when another process got there first.
"""
import multiprocessing
import os

from wler_jax.data.datasets import registry


def _build(data_dir: str, queue) -> None:
    try:
        builder = registry.build("synthetic", data_dir=data_dir, size="smoke", seed=7)
        queue.put(("ok", {s: v.num_examples for s, v in builder.info.splits.items()}))
    except Exception as e:  # reported to the parent, which fails the test with it
        queue.put(("error", repr(e)))


def test_two_processes_build_one_config_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_build, args=(str(tmp_path), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [r[0] for r in results] == ["ok", "ok"], results
    assert results[0][1] == results[1][1] == {"train": 12, "validation": 6, "test": 6}
    config_dir = tmp_path / "wler_synthetic" / "smoke-seed7"
    # one finished build, no leftover incomplete directory from a losing racer
    assert sorted(os.listdir(config_dir)) == ["1.2.0"], os.listdir(config_dir)
