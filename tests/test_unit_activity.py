"""wler_jax.analysis.unit_activity (`python -m bench.unit_activity`) counts dead and always-on
units from the network's own intermediates.

A bias far below (above) every pre-activation must make a layer's every channel dead (always
on), and the counts must cover every conv block and FCv1: if flax's intermediate layout changed
and a layer went missing, or a count read the wrong tensor, these fail.
"""
from __future__ import annotations

import jax
import numpy as np

from wler_jax.analysis import unit_activity
from wler_jax.model import networks
from wler_jax.model.spec import ModelSpec

C = 3


def _setup():
    spec = ModelSpec("wler", C, 0.125, dropout_rate=0.0)
    params = jax.device_get(spec.init(jax.random.key(0)))
    rng = np.random.default_rng(0)
    feats = [rng.uniform(-80, 0, (t, 128)).astype(np.float32) for t in (150, 300)]
    return spec, params, feats


def test_layers_and_a_normal_init():
    spec, params, feats = _setup()
    act = unit_activity.activity(spec, params, feats)
    assert list(act) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1"]
    widths = [networks.scaled(f, 0.125) for f in networks.PAPER_FILTERS]
    assert [act[f"conv{i + 1}"]["channels"] for i in range(5)] == widths
    assert act["fc1"]["channels"] == networks.scaled(networks.PAPER_HIDDEN, 0.125)
    for v in act.values():
        assert 0.0 < v["active"] < 1.0 and 0 <= v["dead"] + v["always_on"] <= v["channels"]


def test_bias_shifts_make_units_dead_or_always_on():
    spec, params, feats = _setup()
    dead = jax.tree.map(np.array, params)
    dead["conv_stack"]["conv3"]["bias"][:] = -1e6
    act = unit_activity.activity(spec, dead, feats)
    assert act["conv3"]["dead"] == act["conv3"]["channels"] and act["conv3"]["active"] == 0.0
    assert act["conv2"]["dead"] < act["conv2"]["channels"]  # only the shifted layer
    on = jax.tree.map(np.array, params)
    on["fc1"]["bias"][:] = 1e6
    act = unit_activity.activity(spec, on, feats)
    assert act["fc1"]["always_on"] == act["fc1"]["channels"] and act["fc1"]["active"] == 1.0
    assert act["fc1"]["dead"] == 0
