"""Several hosts: one `wler_jax.main` process per host through JAX's multi-controller runtime.

JAX runs one Python process per host (a TPU VM worker, a GPU node, or, to try it, several
processes on one CPU machine); `jax.distributed.initialize` connects them, after which
`jax.devices()` lists the devices of every process and one jitted step runs over a mesh of
all of them. This module holds what the training loop needs on top of that, so that
`wler_jax.training.train` reads the same on one host and on many:

- `initialize`: calls `jax.distributed.initialize` when the command line asks for it
  (`--coordinator_address`, `--num_processes`, `--process_id`) or when JAX's own cluster
  detection (Cloud TPU VM, SLURM, Open MPI) finds a job of several processes; otherwise does
  nothing, and one host runs exactly as before.
- `mesh_devices`: the devices of the 'data' axis ordered by process, so each process holds one
  contiguous block of every global batch: the rows `input_pipeline.train_batches(...,
  process_index, process_count)` reads, assembled with `jax.make_array_from_process_local_data`.
- `load_once`: process 0 builds the dataset, the others wait at a barrier and then open it.
- `to_host`: evaluation outputs gathered from every process (`multihost_utils.process_allgather`),
  so every recording is scored once, on the process that read it, and counted once.
- `summary_writer`, `is_main`: process 0 writes TensorBoard events, results.json and progress
  lines; the others log warnings only (`quiet_other_processes`).
- `check_workdir`: a workdir is resumed on the process count that made it, or refused with one
  line. Orbax itself writes and reads checkpoints from several processes (process 0 writes
  the metadata and the replicated arrays, every process joins its barriers), so
  `wler_jax.checkpoints` is the same code on one host and on many.
- SIGTERM (a preempted host) on any process: every process writes the checkpoint of the same
  step and exits (`wler_jax.training.preemption`, through JAX's preemption service);
  `wait_for_all` starts the first step on every process together.

The batch plan (`batch_plan.RecordingBatcher`) depends on the global device count only, so it
is identical on every process and so are the global batch shapes.
"""
from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags, logging
from jax.experimental import multihost_utils
from tensorboardX import SummaryWriter

from wler_jax import errors

try:  # JAX's own cluster detectors: a private module, which another JAX layout may not have
    from jax._src.clusters import ClusterEnv
except ImportError:  # then auto-detection is off; the flags still work
    ClusterEnv = None

T = TypeVar("T")
RUN_KEY = "processes"  # run.json: the process count of a multi-process run (absent: one)


class DistributedError(errors.UserError, ValueError):
    """The multi-process flags do not describe a job (or the workdir was made with another)."""


def detected_cluster() -> str | None:
    """The cluster JAX's auto-detection finds here (e.g. 'SlurmCluster'), if its job has more
    than one process; None otherwise (a laptop, one TPU VM host, a one-task SLURM job).

    Uses the detectors `jax.distributed.initialize()` itself runs with no arguments (Cloud TPU
    VM, GKE TPU, SLURM, Open MPI; `jax._src.clusters`, JAX's only copy of them), so "no flags
    needed" means the same here as in JAX.
    """
    if ClusterEnv is None:
        return None
    for env in ClusterEnv._cluster_types:
        if env.opt_in_only_method:  # mpi4py: only when asked for by name
            continue
        try:
            if env.is_env_present() and env.get_process_count() > 1:
                return env.__name__
        except Exception as e:  # noqa: BLE001  a detector that cannot answer is not a cluster
            logging.debug("cluster detector %s: %s", env.__name__, e)
    return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Joins the job of several processes when asked or detected; True when it did.

    Args:
      coordinator_address: HOST:PORT of process 0's coordinator service (every process gives
        the same); None: from `JAX_COORDINATOR_ADDRESS` or the detected cluster.
      num_processes: processes in the job; None: from the detected cluster.
      process_id: this process, 0 .. num_processes - 1; None: from the detected cluster.
    Returns:
      False when nothing was asked and no cluster of several processes was detected: JAX
      then runs on the local devices only, as before.
    Raises:
      DistributedError: the flags are incomplete or inconsistent (one line for the CLI).
    """
    asked = (coordinator_address, num_processes, process_id) != (None, None, None)
    asked = asked or bool(os.environ.get("JAX_COORDINATOR_ADDRESS"))
    cluster = None if asked else detected_cluster()
    if not asked and cluster is None:
        return False
    if num_processes is not None and num_processes < 1:
        raise DistributedError(f"--num_processes={num_processes}: give the number of processes "
                               "of the job (>= 1)")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise DistributedError(f"--process_id={process_id} is outside 0..{num_processes - 1}: "
                               "give each process its own id below --num_processes")
    if process_id:  # known already: quiet from the start (JAX logs its connection at INFO)
        logging.set_verbosity(logging.WARNING)
    if jax.config.jax_cpu_collectives_implementation is None:
        # CPU devices of several processes talk over gloo (TCP); GPUs and TPUs use their own.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX's preemption service catches SIGTERM on whichever process gets it and tells every
    # process; the training loop asks `multihost_utils.reached_preemption_sync_point` after each
    # step (`preemption.Watch`), so all of them checkpoint the same step and stop.
    jax.config.update("jax_enable_preemption_service", True)
    try:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
    except ValueError as e:  # JAX: a parameter neither given nor detected
        raise DistributedError(
            f"cannot start the job of several processes ({e}); give --coordinator_address="
            "HOST:PORT, --num_processes=N and --process_id=K to every process (or run where "
            "JAX detects the cluster: Cloud TPU VM, SLURM, Open MPI)") from None
    _orbax_barriers_without_collectives()
    logging.warning("process %d of %d (%s): %d local device(s), %d in all",
                    jax.process_index(), jax.process_count(), cluster or "flags",
                    jax.local_device_count(), jax.device_count())
    return True


def _orbax_barriers_without_collectives() -> None:
    """Orbax's barriers through JAX's coordination service, not device collectives.

    By default orbax synchronises processes with `multihost_utils.sync_global_devices`, a
    collective; its async save finishes in a background thread while the main thread runs
    train steps (collectives too), so the two could start in another order on each process and
    wait for each other for ever (seen here: two CPU processes stalled after a mid-epoch save).
    Orbax's own switch `--experimental_orbax_use_distributed_barrier` moves its barriers to the
    distributed client (thread-safe, with timeouts).
    """
    switch = ocp.multihost.EXPERIMENTAL_ORBAX_USE_DISTRIBUTED_BARRIER
    flags.FLAGS[switch.name].value = True
    try:
        on = switch.value
    except flags.UnparsedFlagAccessError:  # flags not parsed (library use): orbax reads False
        on = False
    if not on:
        logging.warning("absl flags are not parsed: orbax's checkpoint barriers stay device "
                        "collectives; run through `python -m wler_jax.main` (or parse flags) "
                        "so that they use JAX's coordination service")


def is_main() -> bool:
    """True on the process that writes files and progress lines (process 0; the only one on
    one host)."""
    return jax.process_index() == 0


def quiet_other_processes() -> None:
    """Processes other than 0 log warnings and errors only (their progress is process 0's)."""
    if not is_main():
        logging.set_verbosity(logging.WARNING)


def mesh_devices() -> np.ndarray:
    """The devices of the 'data' mesh axis: `jax.devices()` on one host; with several processes
    the same devices grouped by process, so each process's devices hold one contiguous block
    of rows of every global batch (the block `input_pipeline`'s `process_index` reads)."""
    devices = jax.devices()
    if jax.process_count() > 1:
        devices = sorted(devices, key=lambda d: d.process_index)  # stable: keeps JAX's order
    return np.array(devices)


def load_once(load_fn: Callable[[], T], what: str = "dataset") -> T:
    """`load_fn()` on process 0 first (it builds a dataset not built yet), then on the others.

    The others wait at a barrier (`multihost_utils.sync_global_devices`) until process 0 is
    done, so a dataset directory shared by the hosts is built once, without two builders
    racing on it; with a directory per host each host's process builds its own copy.
    """
    if jax.process_count() == 1:
        return load_fn()
    barrier = f"wler_jax: {what} ready"
    if is_main():
        try:
            return load_fn()
        finally:  # also on failure: the others then load and report the same problem
            multihost_utils.sync_global_devices(barrier)
    multihost_utils.sync_global_devices(barrier)
    return load_fn()


def wait_for_all(name: str, timeout_s: int = 3600) -> None:
    """Every process reaches `name` before any goes on, through JAX's coordination service
    (no device collective). Before the first train step: gloo gives a collective's peers 30 s
    to join it, and one process compiling the bucket shapes slower than another (a loaded
    host) made the first step of a resumed two-process run fail with DEADLINE_EXCEEDED."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed as jax_distributed

    jax_distributed.global_state.client.wait_at_barrier(f"wler_jax: {name}", timeout_s * 1000)


def to_host(tree: Any) -> Any:
    """Device arrays -> numpy: `jax.device_get` on one host; with several processes the global
    value of every array (each process holds only its rows), `process_allgather(tiled=True)`."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


class _NullWriter:
    """The TensorBoard writer of processes other than 0: writes nothing."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def summary_writer(logdir: str):
    """A `tensorboardX.SummaryWriter` on process 0, a writer of nothing on the others."""
    if not is_main():
        return _NullWriter()
    return SummaryWriter(logdir)


def run_info() -> dict[str, int]:
    """What run.json records of the job: {"processes": N} when N > 1 (nothing on one host, so
    a single-host run.json is unchanged)."""
    return {RUN_KEY: jax.process_count()} if jax.process_count() > 1 else {}


def check_workdir(workdir: str, run: dict | None) -> None:
    """Refuse to resume `workdir` (its run.json `run`) with another process count.

    Orbax restores the replicated train state onto any mesh, and the batch plan depends only on
    the global device count, so another process count with the same device count could resume;
    that is untested (and a different device count would change the batch plan under a saved
    position within an epoch), so another process count is refused with one line.
    """
    if run is None:
        return
    made, now = int(run.get(RUN_KEY, 1)), jax.process_count()
    if made != now:
        raise DistributedError(
            f"workdir {workdir} was made by a job of {made} process(es), this one has {now}; "
            f"resume it with {made} process(es) (--num_processes={made}) or use another --workdir")
