"""Several processes through JAX's multi-controller runtime (`wler_jax.training.distributed`).

Two `python -m wler_jax.main` processes on localhost, two CPU devices each, joined by
`jax.distributed.initialize` (gloo CPU collectives), train the smoke config: their loss at
every step matches one process with four devices, and so do the validation history and the
final mAPs; killing both mid-run and starting both again resumes and ends with the same
results as the uninterrupted two-process run; SIGTERM to one process (a preempted host) stops
both at one step with a checkpoint, exit code 75 and a line saying how to resume, and the
resumed run ends as the uninterrupted one (and so on one process); a one-process start on
that workdir is refused with one line. Evaluation checks itself that every recording is scored exactly once
(`train.predict_split` raises otherwise), on each of these runs.
"""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from wler_jax.training import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every step logged (TensorBoard train/loss); one epoch (5 steps, a checkpoint at step 3) and no
# localisation metrics keep the four runs short: what is compared is training and mAP.
EXTRA = ("--config.train.log_every_steps=1", "--config.eval.localisation=false",
         "--config.train.epochs=1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start(shared, workdir, *, processes, devices, extra=()):
    """`python -m wler_jax.main` as `processes` processes of `devices` CPU devices each."""
    env = dict(os.environ, **shared["env"],
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    cmd = [sys.executable, "-m", "wler_jax.main", "--config=configs/wler.py:smoke",
           f"--workdir={workdir}", f"--config.data.data_dir={shared['data_dir']}", *EXTRA, *extra]
    if processes > 1:
        cmd.append(f"--coordinator_address=localhost:{free_port()}")
        cmd.append(f"--num_processes={processes}")
    procs = []
    for k in range(processes):
        log = open(f"{workdir}.{len(os.listdir(os.path.dirname(workdir)))}.{k}.log", "w+")
        procs.append((subprocess.Popen(
            cmd + ([f"--process_id={k}"] if processes > 1 else []), cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT, text=True), log))
    return procs


def finish(procs, timeout=600) -> list[str]:
    """Waits for every process; returns their logs; fails with the logs on a non-zero exit."""
    deadline = time.time() + timeout
    try:
        codes = [p.wait(timeout=max(1, deadline - time.time())) for p, _ in procs]
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
    logs = []
    for _, log in procs:
        log.seek(0)
        logs.append(log.read())
    assert codes == [0] * len(procs), "\n----\n".join(text[-4000:] for text in logs)
    return logs


def read_scalars(logdir: str, tag: str) -> dict[int, float]:
    """{step: value} of one scalar tag in the TensorBoard event files of `logdir` (TFRecord
    framing: length, its CRC, an `Event` proto, its CRC)."""
    from tensorboardX.proto import event_pb2

    out = {}
    for name in sorted(os.listdir(logdir)):
        data = open(os.path.join(logdir, name), "rb").read()
        pos = 0
        while pos + 12 <= len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for value in event.summary.value:
                if value.tag == tag:
                    out[event.step] = value.simple_value
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_runs):
    """Workdirs of the smoke config on one process x 4 devices and 2 processes x 2 devices."""
    base = tmp_path_factory.mktemp("multihost")
    one, two = str(base / "one_x4"), str(base / "two_x2")
    procs = start(shared_runs, one, processes=1, devices=4)
    finish(procs)  # (builds the dataset, if no earlier test did)
    logs = finish(start(shared_runs, two, processes=2, devices=2))
    return {"one": one, "two": two, "two_logs": logs, "base": base}


def results(workdir):
    return json.load(open(os.path.join(workdir, "results.json")))


@pytest.mark.slow
def test_two_processes_match_one_process_with_four_devices(runs):
    one, two = runs["one"], runs["two"]
    loss_one = read_scalars(os.path.join(one, "tensorboard"), "train/loss")
    loss_two = read_scalars(os.path.join(two, "tensorboard"), "train/loss")
    assert sorted(loss_two) == sorted(loss_one) and len(loss_one) >= 4, (loss_one, loss_two)
    for step in loss_one:
        assert loss_two[step] == pytest.approx(loss_one[step], rel=1e-4, abs=1e-5), step
    a, b = results(one), results(two)
    assert [h["epoch"] for h in a["history"]] == [h["epoch"] for h in b["history"]]
    for split in ("validation", "test"):
        assert abs(a[split]["mAP"] - b[split]["mAP"]) <= 0.01
        assert a[split]["num_examples"] == b[split]["num_examples"]
    # Process 0 writes the files and the progress; the other logs warnings only.
    proc0, proc1 = runs["two_logs"]
    assert "mAP" in proc0 and "validation mAP" in proc0
    assert not [ln for ln in proc1.splitlines() if ln.startswith("I1")], proc1[-2000:]
    assert "Event Name" not in proc1  # no results table
    assert len(os.listdir(os.path.join(two, "tensorboard"))) == 1
    assert json.load(open(os.path.join(two, "run.json")))["processes"] == 2
    assert "processes" not in json.load(open(os.path.join(one, "run.json")))


@pytest.mark.slow
def test_kill_both_and_restart_resumes_to_the_same_results(runs, shared_runs):
    workdir = str(runs["base"] / "killed")
    procs = start(shared_runs, workdir, processes=2, devices=2)
    latest = os.path.join(workdir, "checkpoints", "latest")
    deadline = time.time() + 400
    while time.time() < deadline and all(p.poll() is None for p, _ in procs):
        if os.path.isdir(latest) and any(d.isdigit() for d in os.listdir(latest)):
            break
        time.sleep(0.05)
    assert all(p.poll() is None for p, _ in procs), "run ended before it could be killed"
    for p, _ in procs:
        p.send_signal(signal.SIGKILL)
    for p, _ in procs:
        p.wait()
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    logs = finish(start(shared_runs, workdir, processes=2, devices=2))
    assert "resuming from step" in logs[0]
    a, b = results(runs["two"]), results(workdir)
    assert a["history"] == b["history"]
    for split in ("validation", "test"):
        assert b[split]["AP"] == pytest.approx(a[split]["AP"], abs=1e-6)
    # The resumed steps' losses are the uninterrupted run's (the killed processes' unflushed
    # TensorBoard events are lost with them; the resumed ones are all there).
    resumed_from = int(re.search(r"resuming from step (\d+)", logs[0]).group(1))
    loss_a = read_scalars(os.path.join(runs["two"], "tensorboard"), "train/loss")
    loss_b = read_scalars(os.path.join(workdir, "tensorboard"), "train/loss")
    assert {s for s in loss_a if s > resumed_from} <= set(loss_b), (resumed_from, loss_b)
    for step in loss_b:
        assert loss_b[step] == pytest.approx(loss_a[step], rel=1e-5, abs=1e-6), step


def _preempt_and_resume(runs, shared_runs, name, *, processes, devices, signalled):
    """Starts a run, sends SIGTERM to processes `signalled` once training is under way, checks
    that every process stops at one step with a checkpoint of it and exit code 75, resumes
    it; returns (workdir, the step it stopped at, the resumed run's logs)."""
    from wler_jax.training import preemption

    workdir = str(runs["base"] / name)
    # No periodic checkpoint: the one resumed from is the one written on the signal.
    procs = start(shared_runs, workdir, processes=processes, devices=devices,
                  extra=("--config.train.checkpoint_every_steps=1000",))
    deadline = time.time() + 400
    while time.time() < deadline and all(p.poll() is None for p, _ in procs):
        procs[0][1].seek(0)
        if "step 1/" in procs[0][1].read():  # the first step is done: mid-epoch now
            break
        time.sleep(0.05)
    assert all(p.poll() is None for p, _ in procs), "run ended before the signal"
    for k in signalled:
        procs[k][0].send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=300) for p, _ in procs]
    logs = []
    for _, log in procs:
        log.seek(0)
        logs.append(log.read())
    assert codes == [preemption.EXIT_PREEMPTED] * processes, [t[-3000:] for t in logs]
    line, = [ln for ln in logs[0].splitlines() if ln.startswith("stopped by SIGTERM")]
    step = int(re.search(r"at step (\d+)", line).group(1))
    assert "resume with the same command: python -m wler_jax.main" in line
    assert f"--workdir={workdir}" in line and "Traceback" not in "".join(logs)
    assert 1 <= step < 5  # mid-epoch (one epoch of 5 steps)
    latest = os.path.join(workdir, "checkpoints", "latest")
    assert [d for d in os.listdir(latest) if d.isdigit()] == [str(step)]
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    resumed = finish(start(shared_runs, workdir, processes=processes, devices=devices))
    assert f"resuming from step {step} (epoch 1, batch {step})" in resumed[0]
    return workdir, step, resumed


def _same_results_and_losses(reference: str, workdir: str, after_step: int) -> None:
    a, b = results(reference), results(workdir)
    assert a["history"] == b["history"]
    for split in ("validation", "test"):
        assert b[split]["AP"] == pytest.approx(a[split]["AP"], abs=1e-6)
    loss_a = read_scalars(os.path.join(reference, "tensorboard"), "train/loss")
    loss_b = read_scalars(os.path.join(workdir, "tensorboard"), "train/loss")
    assert {s for s in loss_a if s > after_step} <= set(loss_b), (after_step, loss_b)
    for step in loss_b:
        assert loss_b[step] == pytest.approx(loss_a[step], rel=1e-5, abs=1e-6), step


@pytest.mark.slow
def test_sigterm_checkpoints_the_step_and_resumes_to_the_same_results(runs, shared_runs):
    workdir, step, _ = _preempt_and_resume(runs, shared_runs, "sigterm_one", processes=1,
                                           devices=4, signalled=[0])
    _same_results_and_losses(runs["one"], workdir, step)


@pytest.mark.slow
def test_sigterm_to_one_of_two_processes_stops_both_at_one_step(runs, shared_runs):
    """A preempted host gets SIGTERM alone; both processes save the same step (JAX's
    preemption sync point) and both exit 75; resumed, the run ends as the uninterrupted one."""
    workdir, step, _ = _preempt_and_resume(runs, shared_runs, "sigterm_two", processes=2,
                                           devices=2, signalled=[1])
    _same_results_and_losses(runs["two"], workdir, step)


@pytest.mark.slow
def test_other_process_count_on_resume_is_one_clear_line(runs, shared_runs):
    procs = start(shared_runs, runs["two"], processes=1, devices=4)
    procs[0][0].wait(timeout=300)
    log = procs[0][1]
    log.seek(0)
    text = log.read()
    assert procs[0][0].returncode == 2, text[-3000:]
    line, = [ln for ln in text.splitlines() if ln.startswith("error: ")]
    assert "2 process(es)" in line and "--num_processes=2" in line
    assert "Traceback" not in text


# ------------------------------------------------------------ fast: flags and detection

def test_no_flags_and_no_cluster_leave_one_host_unchanged(monkeypatch):
    for var in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
        monkeypatch.delenv(var, raising=False)
    assert distributed.detected_cluster() is None
    assert distributed.initialize() is False  # jax.distributed.initialize not called


def test_slurm_job_of_several_tasks_is_detected(monkeypatch):
    slurm = {"SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "node[001-002]", "SLURM_NTASKS": "2",
             "SLURM_PROCID": "1", "SLURM_LOCALID": "0"}
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    assert distributed.detected_cluster() == "SlurmCluster"
    monkeypatch.setenv("SLURM_NTASKS", "1")  # one task: a single host, nothing to join
    assert distributed.detected_cluster() is None


@pytest.mark.parametrize("kwargs, message", [
    ({"num_processes": 2, "process_id": 2}, "outside 0..1"),
    ({"num_processes": 0}, ">= 1"),
])
def test_inconsistent_flags_are_user_errors(kwargs, message):
    from wler_jax import errors

    with pytest.raises(errors.UserError, match=message):
        distributed.initialize(coordinator_address="localhost:1", **kwargs)


def test_resume_with_another_process_count_is_refused():
    distributed.check_workdir("w", None)
    distributed.check_workdir("w", {"config": {}})  # made by one process, resumed by one
    with pytest.raises(distributed.DistributedError, match="2 process"):
        distributed.check_workdir("w", {"processes": 2})
