"""Training: optimiser semantics, loss decreasing, padding rows, end-to-end runs, resume."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wler_jax import audio

from wler_jax.model.spec import ModelSpec

from wler_jax.training import steps
from wler_jax.geometry import max_samples_for_frames
from conftest import float_atol, tones_and_noise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C = 4


def make_batch(num_rows=3, frames=192, pad_rows=0, seed=0):
    """A real waveform batch in the pipeline's format (int16, lengths, multi-hot labels),
    followed by `pad_rows` weight-0 padding rows as the pipeline adds them."""
    rng = np.random.default_rng(seed)
    width = max_samples_for_frames(frames)
    lengths = rng.integers(width // 3, width, num_rows)
    wav = np.zeros((num_rows, width), np.int16)
    labels = np.zeros((num_rows, C), np.float32)
    for i in range(num_rows):
        wav[i, : lengths[i]] = audio.to_int16(tones_and_noise(int(lengths[i]), seed=i))
        labels[i, rng.choice(C, 2, replace=False)] = 1
    pad = lambda x: np.concatenate([x, np.zeros((pad_rows,) + x.shape[1:], x.dtype)])
    wav, labels, lengths = pad(wav), pad(labels), pad(lengths.astype(np.int32))
    weight = pad(np.ones(num_rows, np.float32))
    nf = np.where(weight > 0, 1 + lengths // 512, 0).astype(np.int32)
    return {"audio": wav, "num_samples": lengths, "num_frames": nf, "labels": labels,
            "weight": weight, "index": np.where(weight > 0, np.arange(len(nf)), -1).astype(np.int32)}


def init_state(method, width=0.125):
    spec = ModelSpec(method, C, width)
    tx = steps.make_optimizer("adagrad", 1e-2)
    return spec, steps.TrainState.create(apply_fn=None, params=spec.init(jax.random.key(0)), tx=tx)


def test_adagrad_has_lasagne_semantics():
    """update = -lr * g / sqrt(sum of g^2 + eps), accumulator starting at 0 (Lasagne)."""
    tx = steps.make_optimizer("adagrad", 1e-3)
    p = {"w": jnp.array([1.0, -2.0, 0.5])}
    state = tx.init(p)
    acc = np.zeros(3)
    for g in ([0.1, -3.0, 0.0], [0.2, 1.0, 0.0]):
        acc += np.square(g)
        updates, state = tx.update({"w": jnp.array(g)}, state)
        want = -1e-3 * np.asarray(g) / np.sqrt(acc + 1e-6)
        np.testing.assert_allclose(updates["w"], want, rtol=1e-5)


@pytest.mark.parametrize("method", ["wler", "slat"])
def test_loss_decreases(method):
    spec, state = init_state(method)
    step = jax.jit(steps.make_train_step(spec, base_rng=jax.random.key(1)))
    batch = make_batch()
    losses = []
    for _ in range(12):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


@pytest.mark.parametrize("method", ["wler", "slat"])
def test_padding_rows_change_nothing(method):
    """Weight-0 rows (batch filled up to a multiple of the device count) never count."""
    spec, state = init_state(method)
    plain, padded = make_batch(), make_batch(pad_rows=2)
    # Dropout masks depend on the batch shape, so compare deterministic losses: dropout 0.
    spec0 = dataclasses.replace(spec, dropout_rate=0.0)
    fn = lambda p, b: steps.loss(spec0, p, b, jax.random.key(0), slat_hop=128)[0]
    loss = jax.jit(fn)
    grad = jax.jit(jax.grad(fn))
    np.testing.assert_allclose(loss(state.params, padded), loss(state.params, plain), rtol=1e-5)
    g1, g2 = grad(state.params, plain), grad(state.params, padded)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(np.abs(a).max()))


def test_eval_averages_four_scales():
    """Training's evaluation (`inference.predict`) averages the four scales' probabilities."""
    from wler_jax.serving import inference
    spec, state = init_state("wler")
    model = spec.module()
    batch = make_batch()
    out = inference.predict(spec, state.params, batch)
    from wler_jax import features
    probs = []
    for n_fft in (1024, 512, 2048, 4096):
        feats, nf = features.log_mel(batch["audio"], batch["num_samples"], n_fft)
        probs.append(jax.nn.sigmoid(model.apply({"params": state.params}, feats, nf)[0]))
    np.testing.assert_allclose(out["clip"], np.mean(probs, 0), rtol=1e-5, atol=float_atol(1e-6))
    # Max pooling: the clip probability of each scale is its best valid segment's.
    assert out["segments"].shape[:2] == out["segment_mask"].shape


# ---------------------------------------------------------------- end to end (subprocesses)

def run_main(shared, workdir, *extra, config="configs/wler.py:smoke", wait=True):
    """`python -m wler_jax.main` on the session's shared data and compilation cache."""
    cmd = [sys.executable, "-m", "wler_jax.main", f"--config={config}", f"--workdir={workdir}",
           f"--config.data.data_dir={shared['data_dir']}", *extra]
    env = dict(os.environ, **shared["env"])
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def wler_run(tmp_path_factory, shared_runs):
    workdir = str(tmp_path_factory.mktemp("wler"))
    proc = run_main(shared_runs, workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return workdir, proc


@pytest.mark.slow
def test_main_trains_evaluates_and_writes_results(wler_run):
    workdir, proc = wler_run
    results = json.load(open(os.path.join(workdir, "results.json")))
    for split in ("validation", "test"):
        assert 0.0 <= results[split]["mAP"] <= 1.0
        assert len(results[split]["AP"]) + len(results[split]["skipped_classes"]) == 10
        assert "segment_f1" in results[split]["localisation"]
    assert results["train_compiles"] <= results["train_buckets"]
    # Every train and evaluation shape compiled before the first step; none in the loop.
    assert "program(s) ahead" in proc.stderr and "not compiled ahead" not in proc.stderr
    assert "mAP" in proc.stdout and "Air Conditioner" in proc.stdout  # the paper-style table
    assert any(f.startswith("events") for f in os.listdir(os.path.join(workdir, "tensorboard")))
    assert os.listdir(os.path.join(workdir, "checkpoints", "best"))
    run = json.load(open(os.path.join(workdir, "run.json")))
    assert run["class_names"][0] == "air_conditioner"
    # The op choice, made once for the run's devices (CPU here), is recorded.
    assert run["ops"] == {"op_impl": "auto", "resolved": "cpu", "platform": "cpu",
                          "conv_impl": "matmul_grad_wide", "pool_impl": "fused"}


@pytest.mark.slow
def test_incompatible_workdir_is_a_clear_error(wler_run, shared_runs):
    workdir, _ = wler_run
    proc = run_main(shared_runs, workdir, "--config.model.width=0.25")
    assert proc.returncode != 0
    assert "incompatible config" in proc.stderr and "model" in proc.stderr
    assert "Traceback" not in proc.stderr  # a user error: one line (wler_jax.errors)
    line, = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert "incompatible config" in line and "another --workdir" in line


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(wler_run, shared_runs, tmp_path):
    reference, _ = wler_run
    workdir = str(tmp_path / "killed")
    proc = run_main(shared_runs, workdir, wait=False)
    latest = os.path.join(workdir, "checkpoints", "latest")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(latest) and any(d.isdigit() for d in os.listdir(latest)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    resumed = run_main(shared_runs, workdir)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    assert "resuming from step" in resumed.stderr
    a = json.load(open(os.path.join(reference, "results.json")))
    b = json.load(open(os.path.join(workdir, "results.json")))
    assert a["history"] == b["history"]
    for split in ("validation", "test"):
        assert a[split]["AP"] == pytest.approx(b[split]["AP"], abs=1e-6)


@pytest.mark.slow
def test_slat_baseline_runs(shared_runs, tmp_path):
    # One epoch: what is checked is that the SLAT route runs end to end (windows, N_T scoring,
    # localisation), not how far it learns.
    proc = run_main(shared_runs, str(tmp_path / "slat"), "--config.train.epochs=1",
                    config="configs/slat.py:smoke")
    assert proc.returncode == 0, proc.stderr[-5000:]
    results = json.load(open(tmp_path / "slat" / "results.json"))
    assert results["method"] == "slat" and 0.0 <= results["test"]["mAP"] <= 1.0
    assert "segment_f1" in results["test"]["localisation"]


def test_one_scale_per_step_cycles_the_four_scales():
    """scales_per_step='one': step k trains on scale k % 4 (the same examples 'all' holds)."""
    from wler_jax import features
    batch = make_batch()
    for k, n_fft in enumerate((1024, 512, 2048, 4096, 1024)):
        feats, nf, labels, weight = jax.jit(lambda b, s: steps.scale_batch(b, step=s))(
            batch, jnp.int32(k))
        want, _ = features.log_mel(batch["audio"], batch["num_samples"], n_fft)
        np.testing.assert_allclose(feats, want, rtol=0, atol=float_atol(0.0))  # dB; exact on CPU
        np.testing.assert_array_equal(labels, batch["labels"])
    all_feats, _, all_labels, _ = steps.scale_batch(batch)
    assert all_feats.shape[0] == 4 * batch["audio"].shape[0]
    np.testing.assert_array_equal(all_feats[1::4], features.log_mel(
        batch["audio"], batch["num_samples"], 512)[0])


def test_workdir_from_before_a_model_field_resumes_under_its_old_behaviour(tmp_path):
    """A workdir whose run.json predates `model.input_norm` and `model.head_bias_init` resumes
    with their defaults (what it trained with) and is refused with a value it never had."""
    from wler_jax import checkpoints, errors
    from wler_jax.training import train
    from wler_jax.configs.common import base_config

    config = base_config("wler", "smoke")
    old = config.to_dict()
    del old["model"]["head_bias_init"], old["model"]["input_norm"]
    checkpoints.write_run_file(str(tmp_path), {"config": old, "class_names": ["a", "b"]})
    train.check_workdir(str(tmp_path), config, ["a", "b"])  # no error
    for field, value in (("head_bias_init", "prior"), ("input_norm", "per_band")):
        changed = config.copy_and_resolve_references()
        changed.model[field] = value
        with pytest.raises(errors.IncompatibleWorkdirError, match=field):
            train.check_workdir(str(tmp_path), changed, ["a", "b"])



@pytest.mark.parametrize("field, value", [("input_norm", "per_band_mean")])
def test_workdir_with_a_removed_model_option_is_refused(tmp_path, field, value):
    """Options measured, not adopted and removed (`spec.REMOVED_MODEL_OPTIONS`): a workdir
    trained with one is neither resumed nor fine-tuned from, with one line naming the option."""
    from wler_jax import checkpoints, errors
    from wler_jax.configs.common import base_config
    from wler_jax.training import train, transfer

    config = base_config("wler", "smoke")
    made = config.to_dict()
    made["model"][field] = value
    checkpoints.write_run_file(str(tmp_path), {"config": made, "class_names": ["a", "b"]})
    with pytest.raises(errors.IncompatibleWorkdirError, match=f"model.{field}='{value}'") as e:
        train.check_workdir(str(tmp_path), config, ["a", "b"])
    assert "\n" not in str(e.value)
    os.makedirs(tmp_path / "checkpoints" / "best" / "3")  # looks finished to check_source
    with pytest.raises(errors.IncompatibleWorkdirError, match=f"model.{field}='{value}'"):
        transfer.check_source(str(tmp_path), config)
