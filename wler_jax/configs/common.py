"""Fields shared by configs/wler.py and configs/slat.py, and the `:variant,variant` parser.

`--config=configs/wler.py:folder,smoke` selects variants; `--config.a.b=v` overrides any field.
Datasets: synthetic (default) | urbansound | urbansound8k | esc50 | audioset | folder.
Sizes: smoke (tests, seconds) | cpu (default: a laptop CPU in minutes) | full (the paper).
"""
from __future__ import annotations

import ml_collections
from ml_collections import FieldReference

from wler_jax import compile_cache
from wler_jax.data.splits import DATASETS  # the one list of dataset names

SIZES = ("smoke", "cpu", "full")


def parse_arg(arg: str | None) -> tuple[str, str]:
    """`'folder,smoke'` -> ('folder', 'smoke'); defaults ('synthetic', 'cpu')."""
    dataset, size = "synthetic", "cpu"
    for part in filter(None, (arg or "").split(",")):
        part = part.strip()
        if part in DATASETS:
            dataset = part
        elif part in SIZES:
            size = part
        else:
            raise ValueError(f"unknown config variant {part!r}: choose datasets from {DATASETS} "
                             f"and sizes from {SIZES}, comma-separated")
    return dataset, size


def base_config(method: str, arg: str | None) -> ml_collections.ConfigDict:
    """The full config for `method` ('wler' or 'slat') with the variants in `arg` applied."""
    dataset, size = parse_arg(arg)
    c = ml_collections.ConfigDict()
    c.method = method  # 'wler': N_W on whole recordings; 'slat': N_S on windows (the baseline)
    c.seed = 0  # model init, dropout and data order
    # JAX's persistent compilation cache (reruns, resumes and other workdirs load compiled
    # programs instead of compiling them): a directory, default ~/.cache/wler_jax/jax_cache
    # ($XDG_CACHE_HOME and $JAX_COMPILATION_CACHE_DIR honoured); '' turns it off.
    c.compile_cache_dir = compile_cache.default_cache_dir()
    c.compile_ahead = True  # compile every batch shape of the plan before the first step
    c.data = _data_config(dataset, size)
    c.model = _model_config()
    c.input = _input_config()
    c.train = _train_config()
    c.eval = _eval_config()
    _apply_size(c, size)
    return c


def _data_config(dataset: str, size: str) -> ml_collections.ConfigDict:
    d = ml_collections.ConfigDict()
    d.name = dataset
    d.size = {"smoke": "smoke", "cpu": "cpu", "full": "gpu"}[size]  # synthetic set size
    d.seed = 0  # synthetic generation / folder split seed
    d.path = FieldReference(None, field_type=str)  # folder/CSV of the 'folder' dataset
    d.manual_dir = FieldReference(None, field_type=str)  # a user's copy of a corpus
    d.data_dir = FieldReference(None, field_type=str)  # built tfds data; None: ~/.cache/wler_jax/tfds
    d.validation_fold = -1  # urbansound8k / esc50 folds (-1: the builder's default)
    d.test_fold = -1
    d.classes = ""  # audioset: ';'-separated display names ('' = the paper's nine)
    # A folder of recordings of the site's noise without events (any audio format): training
    # mixes them into recordings (input.background_prob) and uses them alone as negatives
    # (input.negative_prob). None: off.
    d.background = FieldReference(None, field_type=str)
    return d


def _model_config() -> ml_collections.ConfigDict:
    # Field defaults are the paper's (the `full` size); `cpu` and `smoke` change the
    # compute-bound knobs (`_apply_size`) so that a 2-core laptop CPU trains in minutes.
    m = ml_collections.ConfigDict()
    m.width = 1.0  # channel width multiplier (1.0 = the paper's 96/128/128/256/256)
    m.pooling = "max"  # max | mean | linear_softmax | exp_softmax | attention | auto_pool
    m.dropout_rate = 0.5  # on the inputs of FC1/FCv1 and FC2/FCv2 (paper)
    m.dtype = "float32"  # compute dtype: float32 | bfloat16 (params stay float32)
    # Op implementations (same function, different speed): auto (cpu when every device of the
    # run is a CPU, else xla) | cpu (matmul kernel gradients on wide convs and the fused
    # ReLU + 2x2 max pool: fast on XLA:CPU) | xla (plain XLA ops: GPUs and TPUs). Recorded,
    # resolved, in the workdir's run.json.
    m.op_impl = "auto"
    # C1P1 (conv1 + bias + ReLU + 2x2 pool): plain (XLA ops) | pallas (one fused Pallas kernel,
    # forward and backward, wler_jax/model/conv1_pallas.py; same function; CPUs run it interpreted).
    # Off by default until timed on a GPU.
    m.conv1_impl = "plain"
    # per_band: standardise each mel band with the training split's mean/std (kept with the
    # params, applied by predict too) | none: raw dB as in the paper
    m.input_norm = "none"
    # zeros: Lasagne's zero output bias (paper) | prior: each class's output bias starts at the
    # logit of its frequency in the training split. Kept although the cpu default does not use it:
    # the paper's recipe (Adagrad 1e-3, `full`) learned in its 150 epochs only with it and
    # input_norm=per_band (docs/experiments.md, part 6).
    m.head_bias_init = "zeros"
    return m


def _input_config() -> ml_collections.ConfigDict:
    i = ml_collections.ConfigDict()
    i.frame_budget = 32 * 1280  # frames per batch (before the 4x scales); sets batch size
    i.bucket_ratio = 1.5  # geometric ratio of the length-bucket ladder
    i.max_frames = 0  # random training crops to this many frames (0 = whole recordings)
    i.mix_prob = 0.0  # training: mix a recording with its batch neighbour (union label)
    i.gain_db = 0.0  # training: random gain of +-N dB per recording
    # With data.background set: the probability that a training recording gets a background
    # excerpt added at an SNR uniform in [low, high] dB, and that it is replaced by an excerpt
    # alone with an empty label (a negative). Unused without data.background.
    i.background_prob = 0.5
    i.background_snr_low_db = 0.0
    i.background_snr_high_db = 20.0
    i.negative_prob = 0.1
    # True: each training epoch draws recordings class-balanced (every class, and "no event",
    # about equally often), with replacement within each length bucket (the plan's batch shapes
    # and count are kept). False: every recording once per epoch.
    i.balance_classes = False
    # SpecAugment on the training log-mel: this many frequency masks of up to N mel bands and
    # time masks of up to N frames per example, filled with the example's mean (0 = off).
    i.freq_masks = 0
    i.freq_mask_bands = 16
    i.time_masks = 0
    i.time_mask_frames = 32
    i.slat_hop = 128  # SLAT training window hop in frames (window = 128)
    i.slat_eval_hop = 32  # SLAT test windows on N_T's 32-frame segment grid
    i.num_threads = 2  # host threads reading and padding batches (a GPU wants ~8)
    # > 0: read in that many processes instead (grain mp_prefetch). Each epoch starts them anew
    # (~2-3 s), so threads are the better choice unless the host is short of cores for them.
    i.worker_count = 0
    i.prefetch = 2  # batches prepared ahead on the host and put on the device ahead
    return i


def _train_config() -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    t.epochs = 150  # paper
    t.scales_per_step = "all"  # all: 4 scales of each recording per step (paper) | one
    t.optimizer = "adagrad"  # adagrad (paper, Lasagne semantics) | adam
    t.learning_rate = 1e-3  # paper
    t.adagrad_eps = 1e-6  # Lasagne's epsilon
    t.adagrad_initial_accumulator = 0.0  # Lasagne starts the accumulator at 0
    t.schedule = "constant"  # constant (paper) | cosine (to 0 at the last step)
    t.warmup_steps = 0  # linear warm-up of the learning rate from 0 over N steps
    # ... or over this many epochs of the run's own training plan (added to warmup_steps), so
    # the warm-up means the same on a corpus of 200 or 20,000 recordings.
    t.warmup_epochs = 0.0
    t.clip_norm = 0.0  # > 0: clip the global gradient norm (0 = off)
    # > 0: keep an exponential moving average of the weights (this decay per step, warm start
    # min(decay, (1 + step) / (10 + step))); validation, the best checkpoint and so predict,
    # export and fine-tuning use the average. 0 = off (the paper's plain weights).
    # Kept though it did not help on the benchmark (docs/experiments.md, part 11): users of
    # audio taggers expect it (PaSST and EfficientAT train with a weight average).
    t.ema_decay = 0.0
    # example: the loss is the sum over the batch's examples / the mean examples per batch of
    # the epoch, so each recording (WLER) or window (SLAT) weighs the same whatever its length
    # bucket | batch: the mean over the batch's examples (the old default: a 60-s recording alone in
    # its bucket then weighs as much as 20 short ones together, and WLER did not learn)
    t.loss_weighting = "example"
    t.checkpoint_every_steps = 200  # latest checkpoint also every N steps within an epoch
    t.log_every_steps = 20
    t.eval_every_epochs = 1  # validation mAP every N epochs (best epoch kept)
    # Fine-tuning (wler_jax/training/transfer.py): a finished workdir whose best checkpoint initialises
    # every parameter of matching shape (the class head only for the same classes); None = off.
    t.init_from = FieldReference(None, field_type=str)
    # Parameters the optimiser never changes: "" (none) | "conv_stack" | a comma-separated list
    # of top-level names or '/'-paths ("conv_stack,fc1", "conv_stack/conv1").
    t.freeze = ""
    return t


def _eval_config() -> ml_collections.ConfigDict:
    e = ml_collections.ConfigDict()
    e.threshold = 0.5  # segment probability for localisation events / segment F1
    e.localisation = True  # when the dataset has true event times
    return e


def _apply_size(c: ml_collections.ConfigDict, size: str) -> None:
    """The `cpu` and `smoke` sizes: the compute-bound knobs of the paper's defaults changed."""
    if size in ("cpu", "smoke"):
        # Measured on the synthetic set (docs/experiments.md, parts 2-4): the paper's Adagrad
        # 1e-3 (with or without dropout 0.5) stays at chance level here, because in this many
        # steps no parameter can move more than lr * sqrt(steps) (~0.04-0.05;
        # `python -m bench.weight_travel`).
        # Adam, no dropout and one scale per step (4x the optimiser steps for the same compute)
        # learn; a cosine decay after a one-epoch warm-up ends each run on a plateau instead of
        # mid-swing (3 seeds: test mAP 0.629 +- 0.027 at 36 epochs vs 0.542 +- 0.089 with a
        # constant rate over 24), and 2e-3 beat 3e-3 on all 5 seeds (WLER 0.675 +- 0.024 vs
        # 0.639 +- 0.029; docs/experiments.md, "Learning, part 4").
        # The paper's recipe does learn at this width with one recording per step,
        # input_norm=per_band and an output bias started at the class prior
        # (model.head_bias_init=prior), but needs its 150 epochs for it (docs/experiments.md,
        # "Learning, part 6").
        c.model.width = 0.125
        c.model.dropout_rate = 0.0
        c.input.frame_budget = 2 * 1280
        c.train.epochs = 36
        c.train.scales_per_step = "one"
        c.train.optimizer = "adam"
        c.train.learning_rate = 2e-3
        c.train.schedule = "cosine"
        c.train.warmup_epochs = 1.0  # (77 steps on the synthetic cpu set, as before)
        c.train.eval_every_epochs = 2  # 160 validation recordings cost ~2 training epochs
    if size == "smoke":
        c.train.epochs = 2
        c.train.warmup_epochs = 0.0
        c.train.eval_every_epochs = 1
        c.train.checkpoint_every_steps = 3
        c.train.log_every_steps = 2


# Other fields a resumed workdir is compared on (train.COMPATIBLE_FIELDS), added after workdirs
# existed: dotted name -> the value that behaves as before the field.
FIELDS_BEFORE_ADDED = {"train.ema_decay": 0.0}


def apply_override(config: ml_collections.ConfigDict, assignment: str) -> None:
    """`"train.epochs=3"` -> config.train.epochs = 3, cast to the field's type (bench scripts'
    `--override`; the CLIs get the same from ml_collections' `--config.a.b=v`)."""
    key, value = assignment.split("=", 1)
    node = config
    *path, leaf = key.split(".")
    for part in path:
        node = node[part]
    old = node[leaf]
    if isinstance(old, bool):
        node[leaf] = value.lower() in ("1", "true")
    elif old is None or isinstance(old, str):
        node[leaf] = value
    else:
        node[leaf] = type(old)(value)
