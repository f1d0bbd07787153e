"""Training and evaluation loop: `train_and_evaluate(config, workdir)` (docs/design.md §4-5).

One jitted train step over a mesh of all devices (batch on axis 'data', params replicated,
state donated); validation mAP every epoch, the best epoch's params kept; the test split scored
with them; `results.json` and a paper-style table at the end. A run restarted on the same
workdir resumes from the latest checkpoint (epoch, batch within the epoch, optimiser state and
the dropout rng position), so it finishes with the same numbers as an uninterrupted run.

Read top-down: `train_and_evaluate` is `set_up` (the `Run`'s pieces and the train state),
`train_epochs` (`train_epoch`, `validate`) and `final_evaluation`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from wler_jax import checkpoints, compile_cache, errors, evaluate
from wler_jax.configs.common import FIELDS_BEFORE_ADDED
from wler_jax.data import input_pipeline, input_stats, splits
from wler_jax.data.background import BackgroundBank
from wler_jax.model import networks
from wler_jax.model.spec import (
    MODEL_FIELDS_BEFORE_ADDED,
    ModelSpec,
    check_removed_options,
    model_field,
    resolve_ops,
)
from wler_jax.serving import inference
from wler_jax.training import (
    calibration,
    distributed,
    preemption,
    steps,
    transfer,
    workdir_lock,
)
from wler_jax.training.augment import Augmentation

# Fields that must match for a workdir to be resumed (others, e.g. epochs, may change).
# train.ema_decay: on or off changes what the checkpointed state holds.
COMPATIBLE_FIELDS = ("method", "model", "data.name", "data.size", "data.seed", "data.path",
                     "data.classes", "data.validation_fold", "data.test_fold", "seed",
                     "train.ema_decay")
# model.* fields that may differ on resume: the op implementations compute the same function.
NOT_COMPARED_MODEL_FIELDS = ("op_impl", "conv1_impl")


def create_model(config: ml_collections.ConfigDict, num_classes: int, devices=None
                 ) -> ModelSpec:
    """The spec of N_W (WLER) or N_S (SLAT) at the configured width, pooling, compute dtype and
    ops; `config.model.op_impl` is resolved for `devices` (default: all of `jax.devices()`)."""
    return ModelSpec.from_config(config, num_classes, devices=devices)


def _compatible_view(config_dict: dict) -> dict:
    out = {}
    for field in COMPATIBLE_FIELDS:
        node = config_dict
        for part in field.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if field == "model" and isinstance(node, dict):  # the ops do not change the function
            # a workdir written before a field existed resumes under its old value, and only it
            node = {k: v for k, v in {**MODEL_FIELDS_BEFORE_ADDED, **node}.items()
                    if k not in NOT_COMPARED_MODEL_FIELDS}
        out[field] = FIELDS_BEFORE_ADDED.get(field) if node is None else node
    return out


def check_workdir(workdir: str, config: ml_collections.ConfigDict, class_names: list[str]) -> None:
    """Refuse to resume a workdir made with other classes, another model or other data."""
    run = checkpoints.read_run_file(workdir)
    if run is None:
        return
    check_removed_options(run["config"].get("model", {}), f"workdir {workdir}")
    problems = []
    if run["class_names"] != list(class_names):
        problems.append(f"classes {run['class_names']} != {list(class_names)}")
    old, new = _compatible_view(run["config"]), _compatible_view(config.to_dict())
    problems += [f"{k}: {old[k]!r} != {new[k]!r}" for k in old if old[k] != new[k]]
    if problems:
        raise errors.IncompatibleWorkdirError(
            f"workdir {workdir} was made with an incompatible config ({'; '.join(problems)}); "
            "use another --workdir or delete this one")


class _Progress:
    """Periodic progress lines: epoch, step, loss, recordings/s, audio-s/s and ETA.

    Step metrics stay on the device until a log step, so logging never stalls the pipeline.
    """

    def __init__(self, total_steps: int, start_step: int, writer):
        self.total, self.start, self.writer = total_steps, start_step, writer
        self.t0 = time.time()
        self.pending: list = []
        self.recordings = self.audio_s = 0.0

    def update(self, step: int, epoch: int, epochs: int, metrics: dict, log: bool) -> None:
        self.pending.append(metrics)
        if not log:
            return
        pending, self.pending = jax.device_get(self.pending), []
        self.recordings += sum(float(m["recordings"]) for m in pending)
        self.audio_s += sum(float(m["audio_seconds"]) for m in pending)
        now = time.time() - self.t0
        eta = (self.total - step) * now / max(step - self.start, 1)
        last = {k: float(v) for k, v in pending[-1].items()}
        logging.info("epoch %d/%d step %d/%d loss %.4f | %.1f recordings/s, %.0f audio-s/s | "
                     "ETA %dm%02ds", epoch + 1, epochs, step, self.total, last["loss"],
                     self.recordings / now, self.audio_s / now, eta // 60, eta % 60)
        for k in ("loss", "grad_norm"):
            self.writer.add_scalar(f"train/{k}", last[k], step)
        self.writer.add_scalar("train/audio_seconds_per_second", self.audio_s / now, step)


def run_rngs(seed: int) -> tuple[jax.Array, jax.Array]:
    """(parameter init key, dropout/augmentation base key) of a run with `config.seed` = seed
    (`python -m bench.weight_travel` rebuilds a run's initial parameters from it)."""
    init_rng, dropout_rng = jax.random.split(jax.random.key(seed))
    return init_rng, dropout_rng


def predict_split(eval_fn, params, source, batcher, mesh_sharding, config) -> dict:
    """Scores of every recording of a split: clip [N, C] and per-recording segment scores."""
    n = len(source)
    clip = np.zeros((n, 0), np.float32)
    segments: list = [None] * n
    scored = np.zeros(n, np.int64)
    for batch in input_pipeline.prefetch_to_device(
            input_pipeline.eval_batches(source, batcher, prefetch=config.input.prefetch,
                                        num_threads=config.input.num_threads,
                                        worker_count=config.input.worker_count,
                                        process_index=jax.process_index(),
                                        process_count=jax.process_count()),
            config.input.prefetch, mesh_sharding):
        out = distributed.to_host(eval_fn(params, batch))  # every process's rows
        idx = np.asarray(distributed.to_host(batch["index"]))
        if clip.shape[1] == 0:
            clip = np.zeros((n, out["clip"].shape[1]), np.float32)
        for row, i in enumerate(idx):
            if i >= 0:
                clip[i] = out["clip"][row]
                segments[i] = out["segments"][row][out["segment_mask"][row]]
                scored[i] += 1
    if not (scored == 1).all():  # on any number of devices and processes
        raise RuntimeError(f"evaluation scored {int((scored == 0).sum())} recording(s) never and "
                           f"{int((scored > 1).sum())} more than once, of {n}")
    return {"clip": clip, "segments": segments}


def _examples_per_batch(spec: ModelSpec, batcher: input_pipeline.RecordingBatcher, config) -> float:
    """Mean training examples per batch of epoch 0: recordings (WLER) or SLAT windows."""
    examples = spec.training_examples(batcher.train_frames, config.input.slat_hop)
    return examples / max(batcher.num_batches(0), 1)


@dataclasses.dataclass
class Run:
    """The pieces of one training run, built once by `set_up` (as flax's examples/imagenet/
    train.py builds its own before the loop) and used by the epoch loop and the final
    evaluation; the train state itself is passed along, since each step replaces it."""

    config: ml_collections.ConfigDict
    workdir: str  # absolute
    sources: dict  # split -> data source ("train", "validation", optionally "test")
    class_names: list
    batchers: dict  # split -> input_pipeline.RecordingBatcher
    steps_per_epoch: list  # train batches of each epoch (the batch plan's, fixed per epoch)
    spec: ModelSpec
    batch_sharding: NamedSharding  # batches split over the mesh's 'data' axis
    replicated: NamedSharding  # params and train state on every device
    ckpt: checkpoints.Checkpointer
    train_step: Callable  # jitted (state, batch) -> (state, metrics); donates the state
    eval_fn: Callable  # (params, batch) -> scores: `inference.predict`, the users' predict_fn
    writer: Any  # TensorBoard (nothing on processes other than 0)
    train_shapes: set = dataclasses.field(default_factory=set)  # batch shapes stepped on
    tables: dict = dataclasses.field(default_factory=dict)  # split -> labels and events, read once


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train `config.method` on `config.data`, evaluate, write `workdir/results.json`.

    Three steps: `set_up` (workdir, data, model, the train state restored or initialised, the
    compiled steps), `train_epochs` (from the restored position to `train.epochs`, validating
    and checkpointing), `final_evaluation` (the best epoch's params on validation and test).
    The workdir is locked for the run (`workdir_lock`: a second run on it is refused).

    Raises:
      preemption.Preempted: SIGTERM or SIGINT during training; the latest checkpoint holds the
        step it stopped after, and the same call resumes from it.
    """
    workdir = _make_workdir(workdir)
    # One run per workdir (process 0 holds the lock for a job of several processes).
    lock = workdir_lock.WorkdirLock(workdir) if distributed.is_main() else contextlib.nullcontext()
    with lock:
        run, state, meta = set_up(config, workdir)
        distributed.wait_for_all("set up")  # every process compiled: the steps start together
        with preemption.Watch() as stop:  # SIGTERM/SIGINT: checkpoint, then `Preempted`
            meta, step = train_epochs(run, state, meta, stop)
        results = final_evaluation(run, meta, step)
        # per-class thresholds fitted on validation, F1 at them, MODEL_CARD.md (calibration.py)
        return calibration.finish_workdir(run.workdir, results=results, sources=run.sources,
                                          batchers=run.batchers)


# -- set-up -------------------------------------------------------------------------------------
def set_up(config: ml_collections.ConfigDict, workdir: str
           ) -> tuple[Run, steps.TrainState, dict]:
    """Everything before the first step: (the run's pieces, the train state, the loop position
    `meta` {"epoch", "batch", "history", "best"}), restored from the latest checkpoint when the
    workdir has one."""
    workdir = _open_workdir(config, workdir)
    sources, class_names, data_info = distributed.load_once(lambda: splits.load(config))
    check_workdir(workdir, config, class_names)
    distributed.check_workdir(workdir, checkpoints.read_run_file(workdir))
    mesh = Mesh(distributed.mesh_devices(), ("data",))
    spec = create_model(config, len(class_names), devices=mesh.devices.flat)
    _write_run_file(workdir, config, class_names, data_info, mesh, spec)
    batch_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    logging.info("%d device(s): %s; workdir %s", jax.device_count(), jax.devices()[0].device_kind,
                 workdir)
    batchers = make_batchers(config, sources, len(class_names))
    steps_per_epoch = [batchers["train"].num_batches(e) for e in range(config.train.epochs)]
    init_rng, dropout_rng = run_rngs(config.seed)
    state = create_train_state(config, spec, init_rng, sum(steps_per_epoch), replicated,
                               warmup_steps=warmup_steps(config, steps_per_epoch))
    ckpt = checkpoints.Checkpointer(workdir)
    state, meta = restore_or_initialize(config, workdir, spec, state, ckpt, sources,
                                        class_names, replicated)
    train_step, eval_fn = make_step_functions(config, spec, state, batchers, dropout_rng,
                                              batch_sharding)
    writer = distributed.summary_writer(os.path.join(workdir, "tensorboard"))
    run = Run(config=config, workdir=workdir, sources=sources, class_names=class_names,
              batchers=batchers, steps_per_epoch=steps_per_epoch, spec=spec,
              batch_sharding=batch_sharding, replicated=replicated, ckpt=ckpt,
              train_step=train_step, eval_fn=eval_fn, writer=writer)
    return run, state, meta


def _make_workdir(workdir: str) -> str:
    """The absolute workdir, created and writable (else one line: before any work, not at the
    first checkpoint)."""
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise errors.NotAWorkdirError(f"--workdir {workdir} is a file, not a directory; give a "
                                      "new directory or an earlier run's workdir")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise errors.WorkdirWriteError(f"cannot write to --workdir {workdir}: "
                                       f"{e.strerror or e}; give a directory you can write to "
                                       "(with free space)") from e
    return workdir


def _open_workdir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The absolute workdir, created; the compilation cache configured; a fine-tuning source
    checked before any work (a resumed run does not read it again)."""
    workdir = _make_workdir(workdir)
    compile_cache.configure(config.get("compile_cache_dir", compile_cache.default_cache_dir()))
    if config.train.get("init_from") and not transfer.has_started(workdir):
        transfer.check_source(config.train.init_from, config, workdir=workdir)  # before any work
    return workdir


def _write_run_file(workdir: str, config: ml_collections.ConfigDict, class_names: list,
                    data_info: dict, mesh: Mesh, spec: ModelSpec) -> None:
    """run.json: the resolved config, classes, data and the op choice for the mesh's devices."""
    ops = {"op_impl": config.model.op_impl,
           "resolved": resolve_ops(config.model.op_impl, mesh.devices.flat),
           "platform": mesh.devices.flat[0].platform, **spec.ops}
    checkpoints.write_run_file(workdir, {**distributed.run_info(), "config": config.to_dict(),
                                         "class_names": class_names, "data": data_info,
                                         "ops": ops})


def make_batchers(config: ml_collections.ConfigDict, sources: dict, num_classes: int) -> dict:
    """Each split's batch plan: length buckets under `input.frame_budget` for every device;
    train shuffled per epoch (and cropped with `input.max_frames`; with background excerpts
    when the augmentation uses `data.background`; drawn class-balanced with
    `input.balance_classes`), the others in order."""
    bank = weights = None
    if Augmentation.from_config(config).uses_background:
        bank = BackgroundBank(config.data.background, seed=config.seed)
    if config.input.get("balance_classes") and "train" in sources:
        weights = input_pipeline.class_balance_weights(
            input_pipeline.scan_labels(sources["train"]), num_classes)
    return {split: input_pipeline.RecordingBatcher(
        src, num_classes=num_classes, frame_budget=config.input.frame_budget,
        num_devices=jax.device_count(), ratio=config.input.bucket_ratio, seed=config.seed,
        shuffle=(split == "train"), max_frames=(config.input.max_frames or None) if split == "train"
        else None, background=bank if split == "train" else None,
        weights=weights if split == "train" else None)
        for split, src in sources.items()}


def warmup_steps(config: ml_collections.ConfigDict, steps_per_epoch: list[int]) -> int:
    """`train.warmup_steps` plus `train.warmup_epochs` of this run's own plan (its mean steps
    per epoch), so that a warm-up given in epochs means the same on any corpus size."""
    per_epoch = sum(steps_per_epoch) / max(len(steps_per_epoch), 1)
    extra = round(config.train.get("warmup_epochs", 0.0) * per_epoch)
    total = config.train.warmup_steps + extra
    if extra:
        logging.info("learning-rate warm-up: %d step(s) (%g epoch(s) of %.1f steps%s)", total,
                     config.train.warmup_epochs, per_epoch,
                     f" + {config.train.warmup_steps}" if config.train.warmup_steps else "")
    return total


def create_train_state(config: ml_collections.ConfigDict, spec: ModelSpec, init_rng: jax.Array,
                       total_steps: int, replicated: NamedSharding, *,
                       warmup_steps: int | None = None) -> steps.TrainState:
    """Fresh parameters and the optimiser (its schedule over `total_steps` after `warmup_steps`,
    default `train.warmup_steps`; frozen subtrees), replicated; with `train.ema_decay` > 0 a
    state that holds the moving average too."""
    tx = steps.make_optimizer(
        config.train.optimizer, config.train.learning_rate,
        adagrad_eps=config.train.adagrad_eps,
        adagrad_initial_accumulator=config.train.adagrad_initial_accumulator,
        total_steps=total_steps,
        warmup_steps=config.train.warmup_steps if warmup_steps is None else warmup_steps,
        schedule=config.train.schedule, clip_norm=config.train.clip_norm,
        frozen=(("input_norm",) if spec.input_norm else ()) + transfer.freeze_paths(config))
    state = jax.jit(lambda r: steps.TrainState.create(apply_fn=None, params=spec.init(r), tx=tx),
                    out_shardings=replicated)(init_rng)
    if config.train.ema_decay > 0:  # the average is part of the state: resumed like the params
        # (the params stand in for its shapes in the restore; a fresh run replaces them with a
        # copy once its start params are final, `initialize_params`)
        state = state.replace(ema_params=state.params)
        logging.info("evaluating a moving average of the weights (decay %g per step)",
                     config.train.ema_decay)
    transfer.check_freeze(transfer.freeze_paths(config), state.params)
    logging.info("%s model, %d parameters (width %.3g, pooling %s, ops: conv %s, pool %s)",
                 config.method.upper(), networks.num_params(state.params), config.model.width,
                 config.model.pooling, spec.conv_impl, spec.pool_impl)
    return state


def restore_or_initialize(config: ml_collections.ConfigDict, workdir: str, spec: ModelSpec,
                          state: steps.TrainState, ckpt: checkpoints.Checkpointer, sources: dict,
                          class_names: list, replicated: NamedSharding
                          ) -> tuple[steps.TrainState, dict]:
    """The latest checkpoint's state and loop position, or `initialize_params` at epoch 0."""
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, meta = restored
        logging.info("resuming from step %d (epoch %d, batch %d)", int(state.step),
                     meta["epoch"] + 1, meta["batch"])
        return state, meta
    state = initialize_params(config, workdir, spec, state, sources["train"], class_names,
                              replicated)
    return state, {"epoch": 0, "batch": 0, "history": [], "best": None}


def initialize_params(config: ml_collections.ConfigDict, workdir: str, spec: ModelSpec,
                      state: steps.TrainState, train_source, class_names: list,
                      replicated: NamedSharding) -> steps.TrainState:
    """A fresh run's start params: the input statistics of the training split
    (`model.input_norm=per_band`) and the output bias at the class prior
    (`model.head_bias_init=prior`), or a fine-tuning source's params (`train.init_from`, which
    brings its own statistics); then the moving average's start (`train.ema_decay` > 0)."""
    init_from = config.train.get("init_from")
    if spec.input_norm and not init_from:
        stats = input_stats.band_statistics(train_source)
        logging.info("input normalisation from %d training frames x scales: per-band mean "
                     "%.1f .. %.1f dB, std %.1f .. %.1f dB", stats["frames"], stats["mean"].min(),
                     stats["mean"].max(), stats["std"].min(), stats["std"].max())
        params = {**state.params, "input_norm": {"mean": jnp.asarray(stats["mean"]),
                                                 "std": jnp.asarray(stats["std"])}}
        state = state.replace(params=jax.device_put(params, replicated))
    if model_field(config.model, "head_bias_init") == "prior":
        prior = input_stats.prior_logits(
            splits.multi_hot_labels(splits.read_split_table(train_source), len(class_names)))
        logging.info("output bias from the training split's class frequencies: logit %.2f .. %.2f",
                     prior.min(), prior.max())
        params = {**state.params, "fc2": {**state.params["fc2"], "bias": jnp.asarray(prior)}}
        state = state.replace(params=jax.device_put(params, replicated))
    if init_from:  # fine-tuning (wler_jax/training/transfer.py)
        params, _ = transfer.init_from_workdir(config, jax.device_get(state.params), class_names,
                                               workdir)
        state = state.replace(params=jax.device_put(params, replicated))
    if config.train.ema_decay > 0:  # the average starts at the params trained from
        state = steps.with_ema(state)
    return state


def make_step_functions(config: ml_collections.ConfigDict, spec: ModelSpec,
                        state: steps.TrainState, batchers: dict, dropout_rng: jax.Array,
                        batch_sharding: NamedSharding) -> tuple[Callable, Callable]:
    """(train_step, eval_fn): the jitted train step (state donated) and `inference.predict`;
    with `compile_ahead` both compiled for every bucket shape of the plan now."""
    example_norm = 0.0
    if config.train.loss_weighting == "example":
        example_norm = _examples_per_batch(spec, batchers["train"], config)
        logging.info("loss: sum over each batch's examples / %.2f (the mean %s per batch)",
                     example_norm, spec.example_unit)
    train_step = jax.jit(steps.make_train_step(spec, slat_hop=config.input.slat_hop,
                                               base_rng=dropout_rng,
                                               scales_per_step=config.train.scales_per_step,
                                               augmentation=Augmentation.from_config(config),
                                               example_norm=example_norm,
                                               ema_decay=config.train.ema_decay),
                         donate_argnums=0)
    eval_fn = functools.partial(inference.predict, spec)  # jitted; the predict_fn users call
    if config.get("compile_ahead", True):  # every bucket shape now, not at its first batch
        train_step, eval_fn = compile_cache.compile_run(
            train_step, inference.predict, spec, state, batchers, num_classes=spec.num_classes,
            sharding=batch_sharding)
    return train_step, eval_fn


# -- the epoch loop -----------------------------------------------------------------------------
def train_epochs(run: Run, state: steps.TrainState, meta: dict,
                 stop: preemption.Watch | None = None) -> tuple[dict, int]:
    """From the restored position to `train.epochs`: each epoch's steps, validation every
    `train.eval_every_epochs` (and at the last), the latest checkpoint after each epoch.
    Returns the final loop position `meta` and step. With `stop`, a signal ends the loop
    after the current step (or epoch end) with a checkpoint (`preemption.Preempted`)."""
    epochs = run.config.train.epochs
    step = int(state.step)
    progress = _Progress(sum(run.steps_per_epoch), step, run.writer)
    for epoch in range(meta["epoch"], epochs):
        state, meta, step = train_epoch(run, state, meta, epoch, step, progress, stop)
        meta = {**meta, "epoch": epoch + 1, "batch": 0}
        if (epoch + 1) % run.config.train.eval_every_epochs == 0 or epoch + 1 == epochs:
            validate(run, state, meta, epoch, step)
        run.ckpt.save_latest(step, state, meta)
        if stop is not None and stop.should_stop():
            _stop(run, stop, step, meta)
    run.ckpt.wait()
    logging.info("train step compiled for %d batch shape(s); %d buckets", len(run.train_shapes),
                 len(run.batchers["train"].bucket_lengths))
    return meta, step


def train_epoch(run: Run, state: steps.TrainState, meta: dict, epoch: int, step: int,
                progress: _Progress, stop: preemption.Watch | None = None
                ) -> tuple[steps.TrainState, dict, int]:
    """One epoch's train steps from batch `meta["batch"]` (> 0 in an epoch resumed mid-way),
    saving the latest checkpoint (and the position in the epoch) every
    `train.checkpoint_every_steps`, and after the current step when `stop` says so (then
    raising `preemption.Preempted`). Returns (state, meta, step)."""
    config = run.config
    if meta["batch"] >= run.steps_per_epoch[epoch]:  # stopped after the epoch's last step
        return state, meta, step
    batches = input_pipeline.train_batches(
        run.sources["train"], run.batchers["train"], epoch, start_batch=meta["batch"],
        prefetch=config.input.prefetch, num_threads=config.input.num_threads,
        worker_count=config.input.worker_count, process_index=jax.process_index(),
        process_count=jax.process_count())
    for k, batch in enumerate(input_pipeline.prefetch_to_device(
            batches, config.input.prefetch, run.batch_sharding), start=meta["batch"]):
        shape = batch["audio"].shape
        if shape not in run.train_shapes:
            run.train_shapes.add(shape)
            logging.info("train step: batch shape %s (shape #%d)", shape, len(run.train_shapes))
        state, metrics = run.train_step(state, batch)
        step += 1
        progress.update(step, epoch, config.train.epochs, metrics,
                        log=step % config.train.log_every_steps == 0)
        stopping = stop is not None and stop.should_stop()
        if stopping or (step % config.train.checkpoint_every_steps == 0
                        and k + 1 < run.steps_per_epoch[epoch]):
            meta = {**meta, "epoch": epoch, "batch": k + 1}
            run.ckpt.save_latest(step, state, meta)
        if stopping:
            _stop(run, stop, step, meta)
    return state, meta, step


def _stop(run: Run, stop: preemption.Watch, step: int, meta: dict) -> None:
    """After a signal: wait for the latest checkpoint (just saved) to be on disk, then raise
    `preemption.Preempted` (the command line says how to resume)."""
    run.ckpt.wait()
    run.writer.close()
    run.ckpt.close()
    raise preemption.Preempted(stop.signal_name or "a signal", step, meta)


def validate(run: Run, state: steps.TrainState, meta: dict, epoch: int, step: int) -> None:
    """Validation mAP after `epoch`, added to `meta["history"]`; a new best is saved as the best
    checkpoint and recorded in `meta["best"]` (`meta` is updated in place)."""
    # with train.ema_decay > 0 the moving average is evaluated and kept as the best
    params = steps.eval_params(state)
    val = _evaluate_split(run, "validation", params, localisation=False)
    meta["history"].append({"epoch": epoch + 1, "step": step, "mAP": val["mAP"]})
    run.writer.add_scalar("validation/mAP", val["mAP"], step)
    logging.info("epoch %d: validation mAP %.4f", epoch + 1, val["mAP"])
    if meta["best"] is None or val["mAP"] > meta["best"]["mAP"]:
        meta["best"] = {"epoch": epoch + 1, "step": step, "mAP": val["mAP"]}
        run.ckpt.save_best(step, params, meta["best"])


# -- the final evaluation -----------------------------------------------------------------------
def final_evaluation(run: Run, meta: dict, step: int) -> dict:
    """The best epoch's params on validation and test (with a bootstrap interval of mAP and
    localisation metrics); process 0 writes `results.json` and prints the paper-style table."""
    config = run.config
    best_params, best_meta = run.ckpt.restore_best()
    best_params = jax.device_put(best_params, run.replicated)
    results = {"best_epoch": best_meta["epoch"], "method": config.method,
               "class_names": run.class_names, "history": meta["history"],
               "train_compiles": len(run.train_shapes),
               "train_buckets": len(run.batchers["train"].bucket_lengths)}
    for split in ("validation", "test"):
        if split in run.sources:
            results[split] = _evaluate_split(run, split, best_params,
                                             localisation=config.eval.localisation, ci=True)
            run.writer.add_scalar(f"{split}/best_mAP", results[split]["mAP"], step)
    run.writer.close()
    run.ckpt.close()
    if not distributed.is_main():  # process 0 writes results.json and the table
        return results
    with open(os.path.join(run.workdir, "results.json.tmp"), "w") as f:
        json.dump(results, f, indent=2)
    os.replace(os.path.join(run.workdir, "results.json.tmp"),
               os.path.join(run.workdir, "results.json"))
    table = evaluate.format_table({s: results[s] for s in ("validation", "test") if s in results},
                                  run.class_names, title=f"{config.method.upper()} on "
                                  f"{config.data.name} (best epoch {best_meta['epoch']})")
    print(table, flush=True)
    return results


def _evaluate_split(run: Run, split: str, params, *, localisation: bool,
                    ci: bool = False) -> dict:
    """AP/mAP of one split (and localisation metrics when the data has event times).

    `run.tables` caches each split's `splits.SplitTable` (labels, events) across epochs.
    """
    src = run.sources[split]
    scores = predict_split(run.eval_fn, params, src, run.batchers[split], run.batch_sharding,
                           run.config)
    if split not in run.tables:
        run.tables[split] = splits.read_split_table(src)
    labels = splits.multi_hot_labels(run.tables[split], len(run.class_names))
    result = evaluate.average_precision(labels, scores["clip"], run.class_names)
    if ci:  # bootstrap 95 % interval of mAP over recordings
        result["mAP_ci95"] = evaluate.bootstrap_map_ci(labels, scores["clip"])
    if localisation:
        loc = splits.localisation(run.tables[split], scores["segments"], run.class_names,
                                  threshold=run.config.eval.threshold,
                                  lengths=run.batchers[split].lengths)
        if loc is not None:
            result["localisation"] = loc
    return result
