"""Dead and always-on ReLU units per layer (`python -m bench.unit_activity`).

A ReLU unit whose pre-activation is <= 0 on every position of every recording passes no signal
and gets no gradient (dead); one that is > 0 almost everywhere (>= `ALWAYS_ON` of positions) is
a linear unit that adds no non-linearity. Either wastes a channel. `activity` counts both per
layer (conv1 .. conv5, and FCv1 for WLER) from the network's own captured intermediates.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from wler_jax import features, geometry
from wler_jax.data import batch_plan

ALWAYS_ON = 0.95  # a unit positive on at least this fraction of positions counts as linear


@functools.lru_cache(maxsize=None)
def _intermediates_fn(spec):
    """Jitted (params, features, num_frames) -> the network's captured intermediates."""
    module = spec.module()
    return jax.jit(lambda p, x, n: module.apply({"params": p}, x, n, capture_intermediates=True,
                                                mutable=["intermediates"])[1]["intermediates"])


def activity(spec, params, feats: list[np.ndarray]) -> dict:
    """Per layer: channels, dead, always on, and the positive fraction of pre-activations.

    Each recording runs alone, padded with the log-mel floor to a rung of the bucket ladder (a
    few compiled shapes); the network masks the padding, and only valid positions are counted.
    """
    ladder = batch_plan.bucket_ladder(max(f.shape[0] for f in feats))
    fired, always, pos, count = {}, {}, {}, {}
    for f in feats:
        num_frames = f.shape[0]
        rung = next(r for r in ladder if r >= num_frames)
        x = np.full((1, rung, f.shape[1]), features.FLOOR_DB, np.float32)
        x[0, :num_frames] = f
        inter = traverse_util.flatten_dict(
            _intermediates_fn(spec)(params, jnp.asarray(x), jnp.asarray([num_frames])), sep="/")
        valid = geometry.padded_frames(num_frames)  # short recordings: padded to 128 frames
        for key, value in inter.items():
            name = key.split("/")[-2] if "/" in key else ""
            if name[4:].isdigit() and key.startswith("conv_stack/conv"):
                (y, bias), = value
                block = int(name[4:]) - 1
                pre = np.asarray(y + bias)[0, :max(1, valid >> block)]
            elif key == "fc1/__call__" and spec.method == "wler":
                pre = np.asarray(value[0])[0, :geometry.num_segments(num_frames)]
            else:
                continue
            on = pre.reshape(-1, pre.shape[-1]) > 0
            fired[name] = fired.get(name, np.zeros(on.shape[1], bool)) | on.any(0)
            always[name] = always.get(name, np.ones(on.shape[1], bool)) & (on.mean(0) >= ALWAYS_ON)
            pos[name] = pos.get(name, 0) + int(on.sum())
            count[name] = count.get(name, 0) + on.size
    return {name: {"channels": int(fired[name].size), "dead": int((~fired[name]).sum()),
                   "always_on": int(always[name].sum()), "active": pos[name] / count[name]}
            for name in sorted(fired, key=lambda n: (n.startswith("fc"), n))}
