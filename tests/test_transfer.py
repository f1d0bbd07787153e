"""Fine-tuning (`train.init_from`, `train.freeze`): what is loaded and what is not, the
N_S <-> N_T conversions, frozen parameters bit-identical to the source after training, resume,
and one-line errors for sources that cannot be used."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from wler_jax import checkpoints, errors

from wler_jax.training import steps

from wler_jax.training import train

from wler_jax.training import transfer
from wler_jax.model.spec import convert_params
from wler_jax.configs.common import base_config
from conftest import SR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEN = [f"source_class_{i}" for i in range(10)]
THREE = ["chirp", "hum", "whistle"]


def make_source(path, method="wler", classes=TEN, *, seed=0, **model):
    """A real workdir (run.json + orbax best checkpoint) of a smoke-size model with random
    parameters (drawn with numpy, shaped by the model's own init; as test_predict.make_workdir):
    what fine-tuning reads from a source is its files, not how well it was trained."""
    config = base_config(method, "smoke")
    for k, v in model.items():
        config.model[k] = v
    spec = train.create_model(config, len(classes))
    shapes = jax.eval_shape(spec.init, jax.random.key(0))
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: (rng.standard_normal(s.shape) / np.sqrt(
        max(1, int(np.prod(s.shape[:-1]))))).astype(np.float32), shapes)
    ckpt = checkpoints.Checkpointer(str(path))
    ckpt.save_best(1, params, {"epoch": 1, "step": 1, "mAP": 0.0})
    ckpt.wait()
    ckpt.close()
    checkpoints.write_run_file(str(path), {"config": config.to_dict(), "class_names": list(classes),
                                           "data": {"builder": "test"}})
    return str(path), params


def target(method="wler", classes=THREE, seed=1):
    config = base_config(method, "smoke")
    spec = train.create_model(config, len(classes))
    return config, spec, jax.device_get(spec.init(jax.random.key(seed)))


def test_matching_params_load_and_another_class_set_reinitialises_the_head(tmp_path):
    _, src = make_source(tmp_path / "src")
    config, spec, fresh = target()
    params, report = transfer.init_params(fresh, src, source_method="wler", target_method="wler",
                                          source_classes=TEN, target_classes=THREE)
    for a, b in zip(jax.tree.leaves(params["conv_stack"]), jax.tree.leaves(src["conv_stack"])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(params["fc1"]["kernel"], src["fc1"]["kernel"])
    np.testing.assert_array_equal(params["fc2"]["kernel"], fresh["fc2"]["kernel"])
    assert params["fc2"]["kernel"].shape[-1] == 3
    assert jax.tree.structure(params) == jax.tree.structure(fresh)
    assert "re-initialised" in report["class_head"] and "10" in report["class_head"]
    assert set(report["reinitialised"]) == {"fc2/kernel", "fc2/bias"}
    assert "conv_stack/conv1/kernel" in report["loaded"] and "fc1/bias" in report["loaded"]
    # The same classes in another order: the head is loaded, its columns reordered by name.
    shuffled = TEN[::-1]
    _, spec10, fresh10 = target(classes=shuffled)
    params, report = transfer.init_params(fresh10, src, source_method="wler",
                                          target_method="wler", source_classes=TEN,
                                          target_classes=shuffled)
    np.testing.assert_array_equal(params["fc2"]["kernel"], src["fc2"]["kernel"][..., ::-1])
    np.testing.assert_array_equal(params["fc2"]["bias"], src["fc2"]["bias"][::-1])
    assert "reordered" in report["class_head"] and not report["reinitialised"]


def test_slat_source_initialises_wler_through_the_exact_conversion(tmp_path):
    """N_S -> N_T: on a 128-frame window the fine-tuning start computes what the source did;
    N_T -> N_S is its inverse."""
    classes = TEN[:4]
    _, src = make_source(tmp_path / "slat", "slat", classes)
    _, wspec, wfresh = target("wler", classes)
    params, report = transfer.init_params(wfresh, src, source_method="slat",
                                          target_method="wler", source_classes=classes,
                                          target_classes=classes)
    assert report["conversion"].startswith("N_S -> N_T") and not report["reinitialised"]
    _, sspec, _ = target("slat", classes)
    x = jnp.asarray(np.random.default_rng(0).uniform(-90, 0, (2, 128, 128)), jnp.float32)
    nf = jnp.array([128, 128])
    ns = sspec.module().apply({"params": src}, x)
    nt, _, _ = wspec.segment_logits(params, x, nf)
    np.testing.assert_allclose(nt[:, 0], ns, rtol=1e-4, atol=1e-4)
    back, _ = convert_params(params, "wler", "slat")
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(src)):
        np.testing.assert_array_equal(a, b)


def _tone_folder(root, n_per_class=6):
    """A 3-class folder tree of 1.5-2.5 s recordings (one sub-folder per label)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(THREE):
        os.makedirs(root / name)
        for i in range(n_per_class):
            n = int(SR * rng.uniform(1.5, 2.5))
            t = np.arange(n) / SR
            f = (300.0, 1200.0, 4000.0)[c] * (1 + 0.05 * i)
            x = 0.3 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(n)
            sf.write(root / name / f"{name}_{i}.wav", x.astype(np.float32), SR)
    return str(root)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A 10-class source fine-tuned on a 3-class folder tree with the conv stack frozen, in
    process (the real train_and_evaluate at the smoke size)."""
    tmp = tmp_path_factory.mktemp("finetune")
    source, src_params = make_source(tmp / "source")
    config = base_config("wler", "folder,smoke")
    config.data.path = _tone_folder(tmp / "tones")
    config.data.data_dir = str(tmp / "tfds")
    config.train.init_from = source
    config.train.freeze = "conv_stack"
    workdir = str(tmp / "finetuned")
    results = train.train_and_evaluate(config, workdir)
    return config, workdir, results, source, src_params


def test_finetune_trains_end_to_end_with_the_conv_stack_frozen(finetuned):
    config, workdir, results, source, src = finetuned
    assert results["class_names"] == THREE and 0.0 <= results["test"]["mAP"] <= 1.0
    ckpt = checkpoints.Checkpointer(workdir)
    best, _ = ckpt.restore_best()
    ckpt.close()
    for path, a in jax.tree_util.tree_leaves_with_path(src["conv_stack"]):
        b = best["conv_stack"]
        for key in path:
            b = b[key.key]
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))  # bit-identical
    assert not np.array_equal(best["fc1"]["kernel"], src["fc1"]["kernel"])  # trained
    assert best["fc2"]["kernel"].shape[-1] == 3
    report = json.load(open(os.path.join(workdir, transfer.TRANSFER_FILE)))
    assert report["source"] == source and report["freeze"] == ["conv_stack"]
    assert "re-initialised" in report["class_head"]


def test_finetune_resumes_without_reading_the_source_again(finetuned, tmp_path):
    config, workdir, results, source, _ = finetuned
    moved = str(tmp_path / "moved_source")
    os.rename(source, moved)  # a resumed run holds its own state
    try:
        again = train.train_and_evaluate(config, workdir)
    finally:
        os.rename(moved, source)
    assert again["history"] == results["history"]
    assert again["test"]["AP"] == pytest.approx(results["test"]["AP"], abs=1e-6)


def test_freeze_keeps_params_bit_identical_through_the_optimiser():
    params = {"conv_stack": {"conv1": {"kernel": jnp.ones((3, 3)), "bias": jnp.zeros(3)},
                             "conv2": {"kernel": jnp.ones(2)}},
              "fc1": {"kernel": jnp.full(4, 0.5)}}
    tx = steps.make_optimizer("adam", 0.1, frozen=("conv_stack/conv1", "fc1"))
    state = steps.TrainState.create(apply_fn=None, params=params, tx=tx)
    grads = jax.tree.map(jnp.ones_like, params)
    for _ in range(3):
        state = state.apply_gradients(grads=grads)
    np.testing.assert_array_equal(state.params["conv_stack"]["conv1"]["kernel"], 1.0)
    np.testing.assert_array_equal(state.params["fc1"]["kernel"], 0.5)
    assert (state.params["conv_stack"]["conv2"]["kernel"] < 1.0).all()


def _one_line(e: Exception) -> str:
    msg = str(e)
    assert "\n" not in msg and isinstance(e, errors.UserError), msg
    return msg


def test_bad_init_from_sources_are_one_line_errors(tmp_path):
    config = base_config("wler", "smoke")
    (tmp_path / "a_file").write_text("")
    (tmp_path / "not_a_workdir").mkdir()
    no_best = tmp_path / "no_best"
    no_best.mkdir()
    checkpoints.write_run_file(str(no_best), {"config": config.to_dict(), "class_names": TEN})
    wide, _ = make_source(tmp_path / "wide", width=0.25)
    normed, _ = make_source(tmp_path / "normed", input_norm="per_band")
    cases = {str(tmp_path / "nowhere"): "does not exist", str(tmp_path / "a_file"): "is a file",
             str(tmp_path / "not_a_workdir"): "not a wler_jax workdir",
             str(no_best): "no best checkpoint", wide: "model.width=0.25",
             normed: "input_norm='per_band'"}
    for path, expected in cases.items():
        with pytest.raises(errors.UserError) as e:
            transfer.check_source(path, config)
        assert expected in _one_line(e.value) and "--config." in str(e.value)
    with pytest.raises(errors.IncompatibleWorkdirError, match="own --workdir"):
        transfer.check_source(wide, config, workdir=wide)
    config.train.freeze = "conv_stack,fc3"
    with pytest.raises(errors.ConfigError, match="fc3") as e:
        transfer.validate(config)
    assert "conv_stack/conv1" in _one_line(e.value)


@pytest.mark.slow
def test_main_refuses_a_bad_source_with_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "wler_jax.main", "--config=configs/wler.py:smoke",
         f"--workdir={tmp_path / 'w'}", f"--config.data.data_dir={tmp_path / 'd'}",
         f"--config.train.init_from={tmp_path / 'nowhere'}"],
        cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == errors.EXIT_USER_ERROR, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    line, = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert "init_from" in line and "does not exist" in line
    assert not os.path.exists(tmp_path / "d")  # refused before any data was built
