"""`train.ema_decay`: the weights' moving average leaves training unchanged, follows its
recursion, keeps frozen parameters bit for bit, is what the best checkpoint holds, and resumes
exactly."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wler_jax import checkpoints, errors

from wler_jax.training import steps

from wler_jax.training import train
from wler_jax.configs.common import base_config
from test_train import init_state, make_batch
from test_transfer import THREE, _tone_folder


def test_ema_follows_its_recursion_and_leaves_training_unchanged():
    spec, state = init_state("wler")
    batch = make_batch()
    plain = jax.jit(steps.make_train_step(spec, base_rng=jax.random.key(1)), donate_argnums=0)
    averaged = jax.jit(steps.make_train_step(spec, base_rng=jax.random.key(1), ema_decay=0.5),
                       donate_argnums=0)  # donation: the average must not share buffers
    a, b = jax.tree.map(jnp.copy, state), steps.with_ema(jax.tree.map(jnp.copy, state))
    want = jax.device_get(state.params)
    for t in range(1, 4):
        a, _ = plain(a, batch)
        b, _ = averaged(b, batch)
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            np.testing.assert_array_equal(x, y)  # the average never feeds back
        d = min(0.5, (1 + t) / (10 + t))  # TensorFlow's warm start, then the decay
        want = jax.tree.map(lambda e, p: d * e + (1 - d) * p, want, jax.device_get(b.params))
        for x, y in zip(jax.tree.leaves(b.ema_params), jax.tree.leaves(want)):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    moved = jax.tree.map(lambda e, p: np.abs(np.asarray(e) - np.asarray(p)).max(),
                         b.ema_params, b.params)
    assert max(jax.tree.leaves(moved)) > 0  # the average lags the params


def test_a_parameter_that_never_moves_stays_bit_identical_in_the_average():
    stats = jnp.asarray(np.random.default_rng(0).normal(-40, 15, 128).astype(np.float32))
    params = {"input_norm": {"mean": stats}, "w": jnp.ones(3)}
    moved = {"input_norm": {"mean": stats}, "w": jnp.full(3, 0.25)}
    ema = params
    for t in range(1, 50):
        ema = steps.ema_update(ema, moved, jnp.int32(t), 0.999)
    np.testing.assert_array_equal(ema["input_norm"]["mean"], stats)
    assert (np.asarray(ema["w"]) < 1.0).all()


def test_turning_the_average_on_or_off_in_a_workdir_is_refused(tmp_path):
    """The state in `latest` holds the average or not; an old run.json (before the field)
    resumes with it off."""
    config = base_config("wler", "smoke")
    old = config.to_dict()
    del old["train"]["ema_decay"]
    checkpoints.write_run_file(str(tmp_path), {"config": old, "class_names": ["a", "b"]})
    train.check_workdir(str(tmp_path), config, ["a", "b"])  # no error
    config.train.ema_decay = 0.99
    with pytest.raises(errors.IncompatibleWorkdirError, match="ema_decay"):
        train.check_workdir(str(tmp_path), config, ["a", "b"])


def _config(tmp, epochs):
    config = base_config("wler", "folder,smoke")
    if not (tmp / "tones").exists():
        _tone_folder(tmp / "tones")
    config.data.path = str(tmp / "tones")
    config.data.data_dir = str(tmp / "tfds")
    config.train.ema_decay = 0.9
    config.train.schedule = "constant"  # a cosine's length would change with the epochs
    config.train.epochs = epochs
    return config


def _latest_state(workdir):
    ckpt = checkpoints.Checkpointer(workdir)
    best, meta = ckpt.restore_best()
    step, latest = ckpt.latest.latest_step(), ckpt.read_latest()
    ckpt.close()
    return best, meta, step, latest


@pytest.mark.slow
def test_best_checkpoint_is_the_average_and_resume_is_exact(tmp_path):
    # One epoch (one validation, so the best is the end): the best checkpoint is the average.
    train.train_and_evaluate(_config(tmp_path, 1), str(tmp_path / "split"))
    best, meta, step, latest = _latest_state(str(tmp_path / "split"))
    assert meta["step"] == step
    for x, y in zip(jax.tree.leaves(best), jax.tree.leaves(latest["ema_params"])):
        np.testing.assert_array_equal(x, y)
    diff = [np.abs(np.asarray(e) - np.asarray(p)).max() for e, p in
            zip(jax.tree.leaves(latest["ema_params"]), jax.tree.leaves(latest["params"]))]
    assert max(diff) > 0  # the average is kept apart from the params

    # Resumed to two epochs: the average comes back from the checkpoint, so every validation
    # figure and the test APs are those of an uninterrupted two-epoch run.
    resumed = train.train_and_evaluate(_config(tmp_path, 2), str(tmp_path / "split"))
    whole = train.train_and_evaluate(_config(tmp_path, 2), str(tmp_path / "whole"))
    assert resumed["class_names"] == THREE and len(whole["history"]) == 2
    assert resumed["history"] == whole["history"]
    assert resumed["test"]["AP"] == pytest.approx(whole["test"]["AP"], abs=1e-6)
    # (AP is rank-based and coarse on this small set: compare the averages themselves too)
    ends = [_latest_state(str(tmp_path / name))[3] for name in ("split", "whole")]
    for x, y in zip(jax.tree.leaves(ends[0]["ema_params"]), jax.tree.leaves(ends[1]["ema_params"])):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
