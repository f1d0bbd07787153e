"""Prediction from a trained workdir: a Python API for other JAX code (the command line is
`python -m wler_jax.predict`, in `__main__.py`; importing this package defines no flags).

Python (docs/design.md §5; `USAGE_SNIPPET` below is run by the tests)::

    model = load_model(workdir)       # Model(params, class_names, config, predict_fn, spec, ...)
    out = model.predict_fn(model.params, {"audio": audio, "num_samples": n})
    out["clip"] [B, C], out["segments"] [B, S, C], out["segment_mask"] [B, S]

`predict_fn` is a jitted pure function (see `inference.predict` for the batch formats); long
recordings go through `predict_waveform` / `predict_file`, which score fixed-size chunks exactly
(same segment scores as one pass) in bounded memory, reading files block by block.

Command line::

    python -m wler_jax.predict --workdir=DIR FILES_OR_FOLDERS... [--output=predictions.json]
        [--threshold=0.5] [--events_tsv=events.tsv [--median_filter=N]] [--scores_dir=DIR]
        [--plot=DIR]
        [--compile_cache_dir=DIR]   (JAX's persistent compilation cache, as in training)

Folders are searched recursively for audio files (`AUDIO_EXTENSIONS`); files named on the
command line are read whatever their extension. Outputs:

* `--output=X.json` (default `predictions.json`): `{"workdir", "class_names", "threshold",
  "results": [{"file", "duration", "scores": {class: p}, "segment_scores": [{"start", "end",
  "scores": {class: p}}, ...], "segments": [{"label", "start", "end", "score"}, ...]}, ...],
  "failed": [{"file", "reason"}, ...]}`. Segment k spans frames [32k, 32k + 128) (~1.49 s,
  hop ~0.37 s), its end cut at the recording's end. "segments" are the detected events:
  segments scoring strictly above the class's threshold (`--threshold` when given, else the
  per-class thresholds fitted on the validation split after training, `THRESHOLDS_FILE`, else
  0.5; "threshold" in the header says which), merged while adjacent or overlapping
  (`localisation.merge_segments`), with the highest segment score. Times in seconds.
* `--output=X.csv`: one long table, columns `file,level,label,start,end,score,reason`:
  `level=clip` rows (one per file and class: the recording's probability, start 0, end its
  duration), `level=segment` rows (one per segment and class), `level=event` rows (the merged
  "segments" above) and `level=failed` rows (empty label/score, the reason).
* `--events_tsv=X.tsv`: DCASE event list, header `filename\tonset\toffset\tevent_label`, for
  sed_eval / sed_scores_eval / PSDS tools. Events come from the 32-frame time line
  (`localisation.grid_scores`, `--grid_reduce`), optionally median filtered over
  `--median_filter` cells, thresholded (`localisation.detect_events`). `filename` is the path
  relative to the folder it was found in (the base name for files named directly).
* `--scores_dir=DIR`: one score table per file, `DIR/<id>.tsv` (id: the name as in
  `--events_tsv` without its extension, folders joined by "__"), in the format sed_scores_eval
  reads (`sed_scores_eval.io.read_sed_scores(DIR)`): header `onset offset <class...>`, then
  gapless non-overlapping rows in seconds, the 32-frame cells of `localisation.grid_scores`
  (`--grid_reduce`) from the same segment scores as the JSON output, unthresholded. Score them
  against true events with `python -m wler_jax.evaluate --scores_dir=DIR ...`.
* `--plot=DIR`: one PNG per file: the top classes' segment scores over time and a class x time
  heat map.

Files that cannot be read (missing, empty, undecodable, no samples, NaN/inf samples) are listed
with their reason at the end (and under "failed"); every other file is still scored and written.
Exit code 1 when any file failed, else 0.

Memory: audio is decoded, down-mixed and resampled (soxr, streaming) block by block and scored
in chunks of `--chunk_frames` frames, so peak memory does not grow with a recording's length.
`python -m bench.inference_speed` measures the whole process's peak RSS on the CPU (chunk 2048
frames, batch 1): 0.74-0.78 / 0.83-0.85 / 0.87-0.94 GB for 1-min / 10-min / one-hour files at width
0.25 over three runs (0.3 GB of it is Python, JAX and the model before scoring), 1.16 / 1.22 GB
for 1 / 10 min at width 1.0. The rise with length is not accumulation: resident memory stays
between 0.69 and 0.83 GB over a 40-minute stream; the peak is two device calls in flight (one
computing while the next chunk is prepared) and allocator slack meeting now and then. Bound:
about 1 GB at width 0.25 and 1.3 GB at width 1.0 on the CPU, whatever the length.
A 44.1 kHz float32 hour is 635 MB and is never held whole.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable, Iterator, Optional, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging

from wler_jax import audio as audio_lib
from wler_jax import checkpoints, compile_cache, errors
from wler_jax.audio import AUDIO_EXTENSIONS, AudioError  # noqa: F401  (re-exported)
from wler_jax.model.spec import ModelSpec
from wler_jax.serving import chunked, embeddings, inference
from wler_jax.serving.chunked import Prediction

USAGE_SNIPPET = '''\
import jax
import numpy as np
from wler_jax.predict import load_model, predict_waveform

model = load_model("/path/to/workdir")  # a workdir trained by python -m wler_jax.main
print(len(model.class_names), "classes, e.g.", model.class_names[0])

# Two recordings at 44.1 kHz mono, zero-padded to a common length (float32 in [-1, 1] or int16).
sr = 44100
t = np.arange(3 * sr) / sr
audio = np.zeros((2, 3 * sr), np.float32)
audio[0] = 0.3 * np.sin(2 * np.pi * 440.0 * t)                                  # 3 s
audio[1, :2 * sr] = 0.1 * np.random.default_rng(0).standard_normal(2 * sr)     # 2 s
batch = {"audio": audio, "num_samples": np.array([3 * sr, 2 * sr])}

out = model.predict_fn(model.params, batch)  # jitted; the four log-mel scales run on the device
print(out["clip"].shape, out["segments"].shape)  # [2, C] and [2, S, C] probabilities
for b in range(2):
    best = int(np.argmax(out["clip"][b]))
    times = np.flatnonzero(out["segment_mask"][b]) * 32 * 512 / sr  # segment start times (s)
    print(model.class_names[best], float(out["clip"][b, best]), len(times), "segments")

# predict_fn is pure: use it inside your own jitted / vmapped code.
@jax.jit
def top_class(params, audio, num_samples):
    scores = model.predict_fn(params, {"audio": audio, "num_samples": num_samples})
    return scores["clip"].argmax(-1)

print(top_class(model.params, audio, batch["num_samples"]))
per_recording = jax.vmap(model.predict_fn, in_axes=(None, 0))(model.params, batch)
np.testing.assert_allclose(per_recording["clip"], out["clip"], atol=1e-5)

# Any length in bounded memory: exact chunks, the same scores as one pass.
long = predict_waveform(model, np.tile(audio[0], 20))  # 60 s
print(long.clip.shape, long.segments.shape, round(long.duration, 1))
'''

DEFAULT_CHUNK_FRAMES = 2048  # ~23.8 s per chunk; 160 frames of each overlap the next
DEFAULT_THRESHOLD = 0.5  # events of a workdir without fitted thresholds
THRESHOLDS_FILE = "thresholds.json"  # per-class thresholds in a finished workdir
MODEL_CARD_FILE = "MODEL_CARD.md"  # what the model was trained on and how well it did


def read_thresholds(workdir: str, class_names: Sequence[str]) -> Optional[dict]:
    """The workdir's fitted {class: threshold} (`THRESHOLDS_FILE`), None when it has none.

    Raises errors.DataError when the file does not name exactly the workdir's classes."""
    path = os.path.join(workdir, THRESHOLDS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        thresholds = json.load(f)["thresholds"]
    if sorted(thresholds) != sorted(class_names):
        raise errors.DataError(f"{path} names classes {sorted(thresholds)[:5]}... but the model "
                               f"has {list(class_names)[:5]}...; delete it or fit it again "
                               "(wler_jax.training.calibration)")
    return {c: float(thresholds[c]) for c in class_names}


@dataclasses.dataclass(frozen=True)
class Model:
    """A trained model ready to predict.

    Attributes:
      params: parameter tree (pass it to `predict_fn`).
      class_names: C class names, the order of every score's last axis.
      config: the training config (`ml_collections.ConfigDict`).
      predict_fn: jitted pure `(params, batch) -> {"clip", "segments", "segment_mask"}`
        (`inference.predict` with this model's spec bound).
      spec: what fixes the network (`spec.ModelSpec`).
      workdir: where it was loaded from.
      embed_fn: jitted pure `(params, batch) -> {"segments", "clip_mean", "clip_max",
        "segment_mask"}`, the FCv1 embeddings (`embeddings.embed` with this model's spec bound).
      thresholds: {class: threshold} fitted on the validation split after training
        (`THRESHOLDS_FILE`, `wler_jax.training.calibration`), or None for a workdir without.
    """

    params: Any
    class_names: tuple[str, ...]
    config: Any
    predict_fn: Callable
    spec: ModelSpec
    workdir: str = ""
    embed_fn: Optional[Callable] = None
    thresholds: Optional[dict] = None

    def decision_thresholds(self, threshold: Optional[float] = None):
        """What cuts scores into events: `threshold` when given, else the workdir's fitted
        per-class thresholds ({class: float}), else `DEFAULT_THRESHOLD`."""
        if threshold is not None:
            return float(threshold)
        return dict(self.thresholds) if self.thresholds else DEFAULT_THRESHOLD


def load_model(workdir: str) -> Model:
    """The best checkpoint of a training workdir (WLER or SLAT), with its classes and config.

    The ops (`config.model.op_impl`, "auto" for workdirs made before the field) are chosen for
    this process's devices.

    Raises:
      errors.NotAWorkdirError (a FileNotFoundError): `workdir` holds no run.json or no best
        checkpoint.
    """
    workdir = os.path.abspath(workdir)
    run = checkpoints.read_run_file(workdir)
    if run is None:
        raise errors.NotAWorkdirError(
            f"{workdir}: no {checkpoints.RUN_FILE}; not a wler_jax workdir (give the --workdir "
            "of a run of python -m wler_jax.main, or train one)")
    config = ml_collections.ConfigDict(run["config"])
    class_names = tuple(run["class_names"])
    ckpt = checkpoints.Checkpointer(workdir, read_only=True)  # a run may be writing it
    try:
        params, meta = ckpt.restore_best()
    except FileNotFoundError as e:
        raise errors.NotAWorkdirError(f"{workdir}: {e}; the run has not finished an evaluation "
                                      "yet: let it train at least one epoch") from e
    finally:
        ckpt.close()
    spec = ModelSpec.from_config(config, len(class_names))
    logging.info("loaded %s (%s, width %g, %d classes) from %s, best epoch %s", spec.method,
                 spec.pooling, spec.width, len(class_names), workdir, meta.get("epoch"))
    return Model(params, class_names, config, functools.partial(inference.predict, spec), spec,
                 workdir, functools.partial(embeddings.embed, spec),
                 read_thresholds(workdir, class_names))


# -- audio -------------------------------------------------------------------------------------
def predict_waveform(model: Model, waveform: np.ndarray, *,
                     chunk_frames: int = DEFAULT_CHUNK_FRAMES, batch_size: int = 1) -> Prediction:
    """Scores of one in-memory recording of any length ([n] float32 or int16, 44.1 kHz mono).

    Equal (to float rounding) to `model.predict_fn` on the whole recording, in chunks of
    `chunk_frames` frames. Returns a `Prediction` (clip [C], segments [S, C], num_samples).
    """
    return chunked.score_waveform(model.spec, model.params, waveform,
                                    chunk_frames=chunk_frames, batch_size=batch_size)


def predict_files(model: Model, paths: Sequence[str], *,
                  chunk_frames: int = DEFAULT_CHUNK_FRAMES, batch_size: int = 1,
                  on_read: Optional[Callable[[], None]] = None
                  ) -> Iterator[tuple[int, Optional[Prediction], Optional[AudioError]]]:
    """Score files in bounded memory: yields (index in `paths`, prediction, None) or
    (index, None, AudioError) for each file, in completion order (batches span files)."""
    scorer = chunked.ChunkedScorer(model.spec, model.params, chunk_frames=chunk_frames,
                                     batch_size=batch_size)
    for i, path in enumerate(paths):
        try:
            scorer.add(i, audio_lib.stream(path))
        except AudioError as e:
            logging.warning("skipping %s", e)
            yield i, None, e
        yield from ((k, p, None) for k, p in scorer.completed())
        if on_read is not None:
            on_read()
    yield from ((k, p, None) for k, p in scorer.flush())


def predict_file(model: Model, path: str, **kwargs) -> Prediction:
    """Scores of one audio file of any length (raises `AudioError` if it cannot be read)."""
    (_, prediction, error), = list(predict_files(model, [path], **kwargs))
    if error is not None:
        raise error
    return prediction


# -- files -------------------------------------------------------------------------------------
def find_audio_files(inputs: Sequence[str]) -> list[tuple[str, str]]:
    """(path, name) of every file to score: files as given (name = base name), folders searched
    recursively for audio files (`audio.is_audio_file`: `AUDIO_EXTENSIONS`, not hidden; name =
    path relative to the folder). Sorted within a folder; duplicates (same real path) kept
    once."""
    found, seen = [], set()
    for item in inputs:
        if os.path.isdir(item):
            pairs = []
            for root, dirs, files in os.walk(item):
                dirs.sort()
                pairs += [(os.path.join(root, f), os.path.relpath(os.path.join(root, f), item))
                          for f in sorted(files) if audio_lib.is_audio_file(f)]
            if not pairs:
                logging.warning("no audio files (%s) under %s", ", ".join(sorted(
                    AUDIO_EXTENSIONS)), item)
        else:
            pairs = [(item, os.path.basename(item))]
        for path, name in pairs:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                found.append((path, name))
    return found


def open_for_files(workdir: str, inputs: Sequence[str], *, compile_cache_dir: Optional[str],
                   batch_size: int) -> tuple[Model, list[tuple[str, str]], int]:
    """What the predict and embed CLIs do before reading audio: the compilation cache (None:
    the default directory, '' off), the model, the chunks per device call (0: 1 on a CPU, 8 on
    accelerators) and the audio files of `inputs` (`errors.DataError` when there are none)."""
    compile_cache.configure(compile_cache.default_cache_dir() if compile_cache_dir is None
                            else compile_cache_dir)
    model = load_model(workdir)
    batch_size = batch_size or (1 if jax.default_backend() == "cpu" else 8)
    files = find_audio_files(inputs)
    if not files:
        raise errors.DataError(f"no audio files found in {', '.join(inputs)}; name audio files "
                               f"or folders holding them ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return model, files, batch_size


def cli(argv: Sequence[str]) -> int:
    """Run the command line in this process (tests, notebooks): argv[0] is the program name.

    The flags are defined by the entry point (`wler_jax/predict/__main__.py`), imported here
    on first use (the entry point imports this module, so not at the top)."""
    from wler_jax.predict import __main__ as entry

    return entry.cli(argv)
