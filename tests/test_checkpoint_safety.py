"""Faults around a training workdir (docs/reliability.md): one run per workdir, checkpoints that
cannot be lost, readers while a run writes, and the signal watch of the training loop.

Each fault is made for real where the machine allows it (a lock held by another process that
is then killed with SIGKILL, bytes of a saved checkpoint overwritten, a full tmpfs, a per-file
size limit, a read-only mount) and checked in this process on tiny states: no training run is
needed to meet them, since `train.train_and_evaluate` reaches them through the same calls. The
end-to-end signal runs are in tests/test_multihost.py.
"""
import contextlib
import os
import resource
import signal
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wler_jax import checkpoints, errors
from wler_jax.training import preemption, workdir_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state(seed: int, n: int = 50_000) -> dict:
    """A small train-state-like tree; random values, so orbax cannot compress it away."""
    return {"step": jnp.array(seed), "w": jax.random.normal(jax.random.key(seed), (n,))}


def _saved(workdir, steps=(1, 2)) -> checkpoints.Checkpointer:
    ckpt = checkpoints.Checkpointer(str(workdir))
    for s in steps:
        ckpt.save_latest(s, _state(s), {"epoch": 0, "batch": s, "history": []})
    ckpt.wait()
    return ckpt


def _latest(workdir) -> str:
    return os.path.join(str(workdir), "checkpoints", "latest")


@contextlib.contextmanager
def _tmpfs(path, size: str, *options: str):
    """A tmpfs mounted at `path` (root with CAP_SYS_ADMIN); skips the test where it cannot be."""
    os.makedirs(path, exist_ok=True)
    opts = ",".join((f"size={size}",) + options)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ------------------------------------------------------------------ one run per workdir

def test_second_run_is_refused_naming_the_first(tmp_path):
    with workdir_lock.WorkdirLock(str(tmp_path)):
        assert workdir_lock.holder(str(tmp_path))["pid"] == os.getpid()
        with pytest.raises(workdir_lock.WorkdirBusyError) as e:
            workdir_lock.WorkdirLock(str(tmp_path)).__enter__()
        message = str(e.value)
        assert f"pid {os.getpid()} on host " in message and "another --workdir" in message
        assert isinstance(e.value, errors.UserError) and "\n" not in message
        # Through the training entry point: refused before any data or model work.
        from wler_jax.configs.common import base_config
        from wler_jax.training import train

        with pytest.raises(workdir_lock.WorkdirBusyError):
            train.train_and_evaluate(base_config("wler", "smoke,folder"), str(tmp_path))
    assert workdir_lock.holder(str(tmp_path)) is None  # released
    with workdir_lock.WorkdirLock(str(tmp_path)):  # and taken again
        pass


def test_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    script = ("import os, signal, sys; from wler_jax.training import workdir_lock; "
              "workdir_lock.WorkdirLock(sys.argv[1]).__enter__(); print(os.getpid(), flush=True); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    dead = int(proc.stdout.split()[0])
    assert '"pid": %d' % dead in open(tmp_path / workdir_lock.LOCK_FILE).read()  # left behind
    assert workdir_lock.holder(str(tmp_path)) is None  # but nobody holds it
    with caplog.at_level("WARNING"), workdir_lock.WorkdirLock(str(tmp_path)):
        assert workdir_lock.holder(str(tmp_path))["pid"] == os.getpid()
    assert f"taking over from a run that ended without releasing it (pid {dead}" in caplog.text


def test_main_refuses_a_busy_workdir_in_one_line(tmp_path):
    os.makedirs(tmp_path / "w")
    with workdir_lock.WorkdirLock(str(tmp_path / "w")):
        proc = subprocess.run(
            [sys.executable, "-m", "wler_jax.main", "--config=configs/wler.py:smoke",
             f"--workdir={tmp_path / 'w'}", f"--config.data.data_dir={tmp_path / 'd'}"],
            cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
            text=True, timeout=300)
    assert proc.returncode == errors.EXIT_USER_ERROR, proc.stderr[-3000:]
    line, = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert f"in use by another run (pid {os.getpid()} on host" in line
    assert "Traceback" not in proc.stderr and not os.path.exists(tmp_path / "d")


# orbax's own background threads of a reader may still stat the step just deleted and log it
# (no effect on what is read: the assertions below)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_predict_reads_best_while_a_run_replaces_it(tmp_path):
    """orbax keeps one `best` step and deletes the old one after writing the new: a reader
    that listed the old step retries on the new one instead of failing."""
    writer = checkpoints.Checkpointer(str(tmp_path))
    writer.save_best(1, {"w": np.full(2000, 1.0, np.float32)}, {"epoch": 1})
    writer.wait()
    done, failures, reads = threading.Event(), [], []

    def read():
        while not done.is_set():
            reader = checkpoints.Checkpointer(str(tmp_path), read_only=True)
            try:
                params, meta = reader.restore_best()
                assert float(params["w"][0]) == meta["epoch"]  # never a mix of two steps
                reads.append(meta["epoch"])
            except Exception as e:  # noqa: BLE001  collected and asserted below
                failures.append(repr(e))
            finally:
                reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for step in range(2, 14):
            writer.save_best(step, {"w": np.full(2000, float(step), np.float32)},
                             {"epoch": step})
            writer.wait()
    finally:
        done.set()
        thread.join()
    assert not failures, failures[:3]
    assert len(reads) >= 3 and reads == sorted(reads)
    assert not os.path.exists(tmp_path / "checkpoints" / "unreadable")


# ------------------------------------------------------------- unreadable checkpoints

def _garble_meta(step_dir):
    with open(os.path.join(step_dir, "meta", "metadata"), "w") as f:
        f.write('{"epoch": 0, "bat')  # cut mid-write


def _truncate_arrays(step_dir):
    data = os.path.join(step_dir, "state", "d")
    for name in os.listdir(data):
        with open(os.path.join(data, name), "r+b") as f:
            f.truncate(7)


def _remove_manifest(step_dir):
    os.remove(os.path.join(step_dir, "state", "manifest.ocdbt"))


@pytest.mark.parametrize("corrupt", [_garble_meta, _truncate_arrays, _remove_manifest])
def test_unreadable_latest_falls_back_to_the_step_before(tmp_path, caplog, corrupt):
    _saved(tmp_path).close()
    corrupt(os.path.join(_latest(tmp_path), "2"))
    ckpt = checkpoints.Checkpointer(str(tmp_path))
    with caplog.at_level("WARNING"):
        state, meta = ckpt.restore_latest(_state(0))
    assert int(state["step"]) == 1 and meta["batch"] == 1
    np.testing.assert_array_equal(state["w"], _state(1)["w"])
    assert "step 2" in caplog.text and "cannot be read" in caplog.text
    assert "resuming from the older checkpoint of step 1" in caplog.text
    # Set aside, not deleted; the run then saves step 2 again without a clash.
    assert [d.startswith("latest-2-") for d in
            os.listdir(tmp_path / "checkpoints" / checkpoints.UNREADABLE_DIR)] == [True]
    ckpt.save_latest(2, _state(2), {"epoch": 0, "batch": 2})
    ckpt.wait()
    assert int(ckpt.restore_latest(_state(0))[0]["step"]) == 2


def test_a_step_saved_again_replaces_itself(tmp_path):
    """A run stopped after an epoch's last step saved that step without the epoch's
    validation; resumed, it saves the same step again at the epoch end (orbax never
    overwrites a step: the old one is deleted first, the step before it still kept)."""
    ckpt = _saved(tmp_path)
    ckpt.save_latest(2, _state(2), {"epoch": 1, "batch": 0, "history": [{"epoch": 1}]})
    ckpt.wait()
    assert ckpt.latest.all_steps() == [1, 2]
    assert ckpt.restore_latest(_state(0))[1]["history"] == [{"epoch": 1}]


def test_no_readable_checkpoint_is_one_line_not_a_fresh_start(tmp_path):
    _saved(tmp_path).close()
    for step in ("1", "2"):
        _truncate_arrays(os.path.join(_latest(tmp_path), step))
    with pytest.raises(checkpoints.CheckpointReadError) as e:
        checkpoints.Checkpointer(str(tmp_path)).restore_latest(_state(0))
    assert "step 2:" in str(e.value) and "step 1:" in str(e.value)
    assert isinstance(e.value, errors.UserError)


def test_an_unfinished_first_save_is_said_and_started_over(tmp_path, caplog):
    os.makedirs(os.path.join(_latest(tmp_path), "3" + checkpoints.TMP_MARK, "state"))
    with caplog.at_level("WARNING"):
        assert checkpoints.Checkpointer(str(tmp_path)).restore_latest(_state(0)) is None
    assert "only unfinished saves" in caplog.text


# -------------------------------------------------------- full disk, unwritable workdir

def _assert_step_1_intact(workdir):
    fresh = checkpoints.Checkpointer(str(workdir))
    assert fresh.latest.all_steps() == [1]
    state, meta = fresh.restore_latest(_state(0))
    np.testing.assert_array_equal(state["w"], _state(1)["w"])
    fresh.close()


def test_full_disk_stops_at_the_save_and_keeps_the_good_checkpoint(tmp_path):
    with _tmpfs(tmp_path / "small", "3m") as disk:
        ckpt = _saved(disk, steps=(1,))
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with open(os.path.join(disk, "filler"), "wb") as f:  # leave ~70 KB free
            f.write(b"\0" * (free - 70_000))
        ckpt._needed = 1  # the free-space check passes: the write itself fails
        with pytest.raises(checkpoints.CheckpointWriteError) as e:
            ckpt.save_latest(2, _state(2, n=200_000), {"epoch": 0, "batch": 2})
            ckpt.wait()
        assert "No space left on device" in str(e.value) and "\n" not in str(e.value)
        assert "step 2" in str(e.value) or "latest checkpoint" in str(e.value)
        _assert_step_1_intact(disk)


def test_file_size_limit_stops_at_the_save_and_keeps_the_good_checkpoint(tmp_path):
    """A quota-like limit that needs no privileges: RLIMIT_FSIZE makes every write past the
    size fail (EFBIG) inside orbax's own writers."""
    ckpt = _saved(tmp_path, steps=(1,))
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, old[1]))
    try:
        with pytest.raises(checkpoints.CheckpointWriteError, match="File too large"):
            ckpt.save_latest(2, _state(2, n=200_000), {"epoch": 0, "batch": 2})
            ckpt.wait()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)
    _assert_step_1_intact(tmp_path)


def test_short_free_space_stops_before_the_save(tmp_path, monkeypatch):
    ckpt = _saved(tmp_path, steps=(1,))
    assert ckpt._needed > 100_000  # learnt from the first save
    usage = checkpoints.shutil.disk_usage(str(tmp_path))
    monkeypatch.setattr(checkpoints.shutil, "disk_usage",
                        lambda p: usage._replace(free=ckpt._needed // 2))
    with pytest.raises(checkpoints.CheckpointWriteError, match="stopped before writing it"):
        ckpt.save_latest(2, _state(2), {"epoch": 0, "batch": 2})
    assert sorted(os.listdir(_latest(tmp_path))) == ["1"]  # nothing started


def test_unwritable_workdir_is_one_line_before_any_work(tmp_path):
    from wler_jax.configs.common import base_config
    from wler_jax.training import train

    if os.geteuid() == 0:
        cm = _tmpfs(tmp_path / "ro", "1m", "ro")
    else:
        os.makedirs(tmp_path / "ro")
        os.chmod(tmp_path / "ro", 0o500)
        cm = contextlib.nullcontext(str(tmp_path / "ro"))
    with cm as ro:
        with pytest.raises(errors.WorkdirWriteError, match="cannot write to --workdir") as e:
            train.train_and_evaluate(base_config("wler", "smoke,folder"), ro)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------- signal watch

def test_signals_are_noted_between_steps_and_a_second_ctrl_c_stops_at_once():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with preemption.Watch() as watch:
        assert not watch.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)  # the process goes on: the step finishes
        assert watch.should_stop() and watch.signal_name == "SIGTERM"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with preemption.Watch() as watch:
        os.kill(os.getpid(), signal.SIGINT)
        assert watch.should_stop() and watch.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert preemption.resume_command(["x", "--workdir=/a b"]) == (
        "python -m wler_jax.main '--workdir=/a b'")
