"""Compile once: JAX's persistent compilation cache, and every batch shape compiled ahead of time.

Why: a run compiles one train-step program per length bucket and one evaluation program per
evaluation bucket. On an H100 the first two bucket shapes took 122 s (autotuning), paid again at
every start and every resume; on a 2-core CPU a smoke run spends most of its start-up compiling.
Two measures (docs/performance.md, "Compile once", has the numbers):

* `configure(config.compile_cache_dir)`: JAX's persistent compilation cache
  (`jax_compilation_cache_dir`; on GPUs also XLA's per-fusion autotuning cache, which JAX keeps
  in the same folder), so a rerun, a resume or another workdir with the same programs loads
  executables instead of compiling them. Every program is cached, however short its compile
  (`MIN_COMPILE_TIME_SECS`): on the CPU most of a small run's programs compile in under JAX's
  default threshold of 1 s, and together they are most of its start-up.
* `compile_ahead(...)`: the train step for every batch shape of the run's plan and the
  evaluation step for every evaluation shape are lowered and compiled before the first step,
  in parallel threads (XLA compiles with the GIL released), with one progress line and the
  total time logged. The loop then calls those executables (`AheadOfTime`): no step waits
  for a compile, and a shape outside the plan still works (it is compiled on first use, as
  before, and logged).

Synopsis::

    compile_cache.configure(config.compile_cache_dir)    # before the first compile
    train_step = compile_cache.compile_ahead(train_step, [(state, batch), ...], name="train step")
    state, metrics = train_step(state, batch)             # the executable for batch's shapes

Library code: no flags here, and no JAX import until a function needs it (configs read
`default_cache_dir` without starting JAX); entry points pass their `--compile_cache_dir`
(predict) or `config.compile_cache_dir` (training) to `configure`.
"""
from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from typing import Any, Callable, Hashable, Optional, Sequence

import numpy as np
from absl import logging

DEFAULT_SUBDIR = os.path.join("wler_jax", "jax_cache")
# Cache every program: most of a CPU run's programs compile in < 1 s (JAX's default threshold)
# and together they are most of its start-up; a cache read costs milliseconds.
MIN_COMPILE_TIME_SECS = 0.0
MIN_ENTRY_SIZE_BYTES = -1  # no size threshold (-1: JAX's "no restriction, no override")

_lock = threading.Lock()
_configured: Optional[str] = None  # the directory `configure` last set ('' = off)
_events = {"hits": 0, "misses": 0}
_listening = False


def default_cache_dir() -> str:
    """The default `compile_cache_dir`: $JAX_COMPILATION_CACHE_DIR when the user set it (JAX's own
    variable keeps its meaning), else $XDG_CACHE_HOME/wler_jax/jax_cache, else
    ~/.cache/wler_jax/jax_cache."""
    explicit = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, DEFAULT_SUBDIR)


def _count(event: str, **_: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        with _lock:
            _events["hits"] += 1
    elif event == "/jax/compilation_cache/cache_misses":  # recorded when an entry is written
        with _lock:
            _events["misses"] += 1


def cache_events() -> dict[str, int]:
    """Persistent-cache hits and writes (misses) in this process since `configure` (JAX's
    monitoring events)."""
    with _lock:
        return dict(_events)


def configure(cache_dir: Optional[str]) -> Optional[str]:
    """Point JAX's persistent compilation cache at `cache_dir`; '' or None turns it off.

    Call it before the programs it should cover are compiled (an entry point's first JAX work).
    Calling it again with another directory re-targets the cache (JAX's cache object is reset).

    Args:
      cache_dir: a directory (created; `~` expanded), or '' / None for no persistent cache.
        A directory that cannot be created or written turns the cache off with a warning.
    Returns:
      The absolute directory in use, or None when off.
    """
    global _configured, _listening
    # deferred here and below: config files import this module for `default_cache_dir`, and a
    # config must load without JAX
    import jax
    from jax.experimental.compilation_cache import compilation_cache as cc

    path = os.path.abspath(os.path.expanduser(cache_dir)) if cache_dir else ""
    if path:
        try:  # a read-only home (e.g. on a cluster) must not stop a run: no cache instead
            os.makedirs(path, exist_ok=True)
            if not os.access(path, os.W_OK):
                raise PermissionError(f"{path} is not writable")
        except OSError as e:
            logging.warning("compilation cache %s unusable (%s): running without it; set "
                            "--config.compile_cache_dir (or --compile_cache_dir) to a writable "
                            "directory, or '' to silence this", path, e)
            path = ""
    with _lock:
        if not _listening:
            jax.monitoring.register_event_listener(_count)
            _listening = True
        changed = _configured is not None and _configured != path
        _configured = path
    if changed or jax.config.jax_compilation_cache_dir not in (None, path):
        cc.reset_cache()  # JAX initialises its cache object once per process (e.g. from
        # $JAX_COMPILATION_CACHE_DIR at the first compile): re-target or drop it
    if not path:
        jax.config.update("jax_enable_compilation_cache", False)
        logging.info("persistent compilation cache off")
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", MIN_ENTRY_SIZE_BYTES)
    logging.info("persistent compilation cache: %s", path)
    return path


def abstract(tree: Any) -> Any:
    """`jax.ShapeDtypeStruct`s (with the arrays' shardings where they have one) of a pytree of
    arrays: what `jit(...).lower` takes to compile for those arguments."""
    import jax

    def leaf(x):
        sharding = getattr(x, "sharding", None)
        if isinstance(x, jax.ShapeDtypeStruct) or sharding is None:
            return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
    return jax.tree.map(leaf, tree)


def shape_key(tree: Any) -> Hashable:
    """What selects an executable: the tree structure and every leaf's shape and dtype."""
    import jax

    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(x.dtype)) for x in leaves)


class AheadOfTime:
    """Calls the executable compiled ahead of time for the arguments' shapes; any other shapes
    go to the jitted function (compiled on first use, logged once per shape).

    Attributes:
      name: what the programs are ("train step"), for the log.
      executables: {shape_key: `jax.stages.Compiled`}.
      fallback_shapes: keys that were not compiled ahead (each compiled by `jitted`).
      compile_seconds: wall time of the ahead-of-time compile.
    """

    def __init__(self, jitted: Callable, executables: dict, *, name: str, key_argnum: int,
                 compile_seconds: float = 0.0):
        self.jitted, self.executables, self.name = jitted, executables, name
        self.key_argnum = key_argnum
        self.compile_seconds = compile_seconds
        self.fallback_shapes: set = set()

    def __call__(self, *args):
        key = shape_key(args[self.key_argnum])
        executable = self.executables.get(key)
        if executable is not None:
            try:
                return executable(*args)
            except (TypeError, ValueError) as e:  # arguments' shardings / types differ:
                # checked before anything runs or is donated; the jitted function adapts.
                logging.warning("%s: executable compiled ahead does not take these arguments "
                                "(%s); compiling on first use instead", self.name,
                                str(e).splitlines()[0][:200])
                del self.executables[key]
        if key not in self.fallback_shapes:
            self.fallback_shapes.add(key)
            logging.info("%s: compiling for shapes %s (not compiled ahead)", self.name,
                         [s for s, _ in key[1]])
        return self.jitted(*args)


def compile_ahead(jitted: Callable, arg_sets: Sequence[tuple], *, name: str,
                  static_args: tuple = (), key_argnum: int = -1,
                  max_threads: Optional[int] = None) -> AheadOfTime:
    """Lower and compile `jitted` for each argument set, in parallel threads.

    Args:
      jitted: a `jax.jit`-wrapped function.
      arg_sets: argument tuples of arrays or `jax.ShapeDtypeStruct`s (with shardings), one per
        program; sets with the same `shape_key` of argument `key_argnum` are compiled once.
      name: what the programs are, for the log.
      static_args: leading static arguments passed to `lower` but not to the executables
        (e.g. `inference.predict`'s spec).
      key_argnum: the argument (index into an arg set, without `static_args`) whose shapes
        select the executable at call time (the batch).
      max_threads: compile threads (default: one per program, at most the CPU count).
    Returns:
      An `AheadOfTime` callable taking the non-static arguments.
    """
    unique: dict = {}
    for args in arg_sets:
        unique.setdefault(shape_key(args[key_argnum]), args)
    t0 = time.perf_counter()
    lowered = {k: jitted.lower(*static_args, *abstract(args)) for k, args in unique.items()}
    t_lower = time.perf_counter() - t0
    threads = max(1, min(len(lowered), max_threads or os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = {k: pool.submit(lw.compile) for k, lw in lowered.items()}
        executables = {k: f.result() for k, f in futures.items()}
    seconds = time.perf_counter() - t0
    logging.info("%s: %d shape(s) compiled ahead in %.1f s (tracing/lowering %.1f s, %d "
                 "thread(s))", name, len(executables), seconds, t_lower, threads)
    return AheadOfTime(jitted, executables, name=name, key_argnum=key_argnum,
                       compile_seconds=seconds)


def plan_batches(batcher, num_classes: int, sharding, *, train: bool) -> list[dict]:
    """Abstract batches (`jax.ShapeDtypeStruct`, with `sharding`) of every shape in a split's
    plan: the training plan's buckets (the same in every epoch) or the evaluation plan's.

    The batch format is `input_pipeline.collate`'s, taken from a batch of padding rows.
    """
    import jax

    from wler_jax.data import input_pipeline

    plan = batcher.epoch_plan(0) if train else batcher.eval_plan()
    shapes = sorted({(bucket, len(indices)) for bucket, indices in plan})
    out = []
    for bucket, rows in shapes:
        empty = input_pipeline.collate([], bucket, np.full(rows, input_pipeline.PADDING_INDEX),
                                       num_classes=num_classes)
        if train and getattr(batcher, "background", None) is not None:
            empty["background"] = empty["audio"]  # `_PlanReader`: excerpts of the audio's shape
        out.append({k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding)
                    for k, v in empty.items()})
    return out


def compile_run(train_step: Callable, eval_jitted: Callable, spec: Any, state: Any,
                batchers: dict, *, num_classes: int, sharding,
                eval_splits: Sequence[str] = ("validation", "test")
                ) -> tuple[AheadOfTime, AheadOfTime]:
    """A training run's programs compiled ahead of time: the train step for every training
    bucket and `eval_jitted(spec, params, batch)` (`inference.predict`) for every evaluation
    bucket of `eval_splits`, all in one thread pool, one progress line and the total logged.

    Returns:
      (train_step, eval_fn) taking the same arguments as before: (state, batch) and
      (params, batch).
    """
    train_sets = [(state, b) for b in plan_batches(batchers["train"], num_classes, sharding,
                                                   train=True)]
    eval_sets = [(state.params, b) for split in eval_splits if split in batchers
                 for b in plan_batches(batchers[split], num_classes, sharding, train=False)]
    n_eval = len({shape_key(b) for _, b in eval_sets})
    logging.info("compiling ahead: train step x %d batch shape(s), evaluation x %d ...",
                 len(train_sets), n_eval)
    before = cache_events()
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both lowerings, then compiles
        train_f = pool.submit(compile_ahead, train_step, train_sets, name="train step",
                              key_argnum=1)
        eval_f = pool.submit(compile_ahead, eval_jitted, eval_sets, name="evaluation",
                             static_args=(spec,), key_argnum=1)
        train, evaluation = train_f.result(), eval_f.result()
    after = cache_events()
    logging.info("compiled %d program(s) ahead in %.1f s (persistent cache: %d loaded, %d "
                 "written)", len(train.executables) + len(evaluation.executables),
                 time.perf_counter() - t0, after["hits"] - before["hits"],
                 after["misses"] - before["misses"])
    return train, evaluation
