"""Config checks before any work starts: unknown fields and bad values become clear errors.

ml_collections reports an unknown `--config.x.y=v` as a raw AttributeError traceback and does
not know which values make sense; `flags_parser` and `validate` turn both into one-line errors.
"""
from __future__ import annotations

import os

import ml_collections
from absl import flags

from wler_jax import errors
from wler_jax.data.splits import DATASETS
from wler_jax.model import pooling
from wler_jax.model.spec import CONV1_IMPLS, METHODS, OP_IMPLS
from wler_jax.training import transfer

CHOICES = {
    "method": METHODS,
    "data.name": DATASETS,
    "data.size": ("smoke", "cpu", "gpu"),
    "model.pooling": tuple(pooling.POOLINGS),
    "model.dtype": ("float32", "bfloat16"),
    "model.op_impl": OP_IMPLS,
    "model.conv1_impl": CONV1_IMPLS,
    "train.optimizer": ("adagrad", "adam"),
    "train.scales_per_step": ("all", "one"),
    "train.schedule": ("constant", "cosine"),
    "train.loss_weighting": ("batch", "example"),
    "model.input_norm": ("none", "per_band"),
    "model.head_bias_init": ("zeros", "prior"),
}
POSITIVE = ("model.width", "input.frame_budget", "input.bucket_ratio", "input.slat_hop",
            "input.slat_eval_hop", "train.epochs", "train.learning_rate",
            "train.checkpoint_every_steps", "train.log_every_steps", "train.eval_every_epochs")


def flags_parser(argv: list[str]) -> list[str]:
    """absl flag parsing that exits with one clear line on an unknown config field."""
    try:
        return flags.FLAGS(argv)
    except AttributeError as e:  # ml_collections: unknown field in --config.a.b=v
        msg = str(e).strip("'\"").replace("\\n", " ").replace("\n", " ")
        bad = [a for a in argv[1:] if a.startswith("--config.")]
        errors.fail(f"unknown config field in {bad}: {msg}; see wler_jax/configs/common.py "
                    "for the fields")
    except flags.Error as e:  # keep the cause, drop the config loader's traceback
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        errors.fail(f"{lines[0]} {lines[-1] if len(lines) > 1 else ''}".rstrip())
    except ValueError as e:  # a bad ':variant'
        errors.fail(str(e))


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises `errors.ConfigError` (a ValueError) naming each field outside its allowed range."""
    problems = []
    for field, allowed in CHOICES.items():
        if _get(config, field) not in allowed:
            problems.append(f"{field}={_get(config, field)!r} (choose from {', '.join(allowed)})")
    for field in POSITIVE:
        if not _get(config, field) > 0:
            problems.append(f"{field}={_get(config, field)!r} (must be > 0)")
    if not 0.0 <= config.model.dropout_rate < 1.0:
        problems.append(f"model.dropout_rate={config.model.dropout_rate} (must be in [0, 1))")
    for field in ("input.num_threads", "input.prefetch", "input.worker_count",
                  "train.warmup_steps", "train.warmup_epochs", "train.clip_norm",
                  "input.mix_prob", "input.gain_db", "input.freq_masks", "input.freq_mask_bands",
                  "input.time_masks", "input.time_mask_frames"):
        if _get(config, field) < 0:
            problems.append(f"{field}={_get(config, field)!r} (must be >= 0)")
    for field in ("input.mix_prob", "input.background_prob", "input.negative_prob"):
        if not 0.0 <= _get(config, field) <= 1.0:
            problems.append(f"{field}={_get(config, field)!r} (must be in [0, 1])")
    if config.input.background_snr_low_db > config.input.background_snr_high_db:
        problems.append(f"input.background_snr_low_db={config.input.background_snr_low_db} > "
                        f"input.background_snr_high_db={config.input.background_snr_high_db}")
    if not 0.0 <= config.train.ema_decay < 1.0:
        problems.append(f"train.ema_decay={config.train.ema_decay} (must be in [0, 1))")
    if config.input.max_frames and config.input.max_frames < 128:
        problems.append(f"input.max_frames={config.input.max_frames} (0 or >= 128)")
    if config.data.get("background") and not os.path.isdir(config.data.background):
        problems.append(f"data.background={config.data.background!r} (not a folder)")
    if config.data.name == "folder" and not config.data.path:
        problems.append("data.path is required for the folder dataset "
                        "(--config.data.path=FOLDER_OR_CSV)")
    if problems:
        raise errors.ConfigError("invalid config: " + "; ".join(problems))
    transfer.validate(config)  # train.init_from / train.freeze
