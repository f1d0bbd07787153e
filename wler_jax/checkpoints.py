"""Orbax checkpoints of a workdir: `latest` (full train state, to resume) and `best` (params).

Two managers, because with a metric-ordered `max_to_keep` orbax may delete the newest step
(STACK_NOTES): `WORKDIR/checkpoints/latest` keeps the last train state plus a JSON record of
where training stands (epoch, batch, history); `WORKDIR/checkpoints/best` keeps the parameters of
the epoch with the best validation mAP. Orbax writes each step to a temporary directory and
renames it when complete, so a kill mid-save never leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

RUN_FILE = "run.json"  # resolved config + class names: what a workdir was made with


def _manager(path: str, items: tuple[str, ...]) -> ocp.CheckpointManager:
    # Each manager its own barrier names: at an epoch end `latest` and `best` save the same step
    # at once, and on several processes their barriers ("_async_write_complete.<step>", ...)
    # would otherwise collide ("Barrier ... is already ongoing"; seen under load).
    prefix = os.path.basename(path)
    return ocp.CheckpointManager(
        path, options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                barrier_sync_key_prefix=prefix)), item_names=items)


class Checkpointer:
    """The `latest` and `best` checkpoints of one workdir."""

    def __init__(self, workdir: str):
        root = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.latest = _manager(os.path.join(root, "latest"), ("state", "meta"))
        self.best = _manager(os.path.join(root, "best"), ("params", "meta"))

    def save_latest(self, step: int, state: Any, meta: dict) -> None:
        self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def save_best(self, step: int, params: Any, meta: dict) -> None:
        self.best.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params), meta=ocp.args.JsonSave(meta)), force=True)

    def restore_latest(self, abstract_state: Any) -> tuple[Any, dict] | None:
        """(state, meta) of the latest checkpoint, shaped and sharded like `abstract_state`."""
        step = self.latest.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        out = self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out.state, out.meta

    def read_latest(self) -> dict | None:
        """The latest train state as saved (nested dicts of arrays: step, params, opt_state,
        ema_params when kept), without an abstract state: for readers outside training."""
        step = self.latest.latest_step()
        if step is None:
            return None
        return self.latest.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))["state"]

    def restore_best(self) -> tuple[Any, dict]:
        """(params, meta) of the best checkpoint, as host-loadable arrays."""
        step = self.best.latest_step()
        if step is None:
            raise FileNotFoundError(f"no best checkpoint under {self.best.directory}")
        out = self.best.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
        return out.params, out.meta

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def write_run_file(workdir: str, run: dict) -> None:
    """Record the resolved config and class names (atomically: write then rename)."""
    if jax.process_index() != 0:  # several processes: process 0 writes it for all
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, RUN_FILE)
    with open(path + ".tmp", "w") as f:
        json.dump(run, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def read_run_file(workdir: str) -> dict | None:
    path = os.path.join(workdir, RUN_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
