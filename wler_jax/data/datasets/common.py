"""Shared base of the wler_jax tensorflow-datasets builders: schema, decoding, skip reports.

Every builder (synthetic, UrbanSound, UrbanSound8K, ESC-50, AudioSet eval, folder/CSV) yields
the same example::

  {"id": str, "audio": int16 [num_samples] mono 44.1 kHz, "labels": [class index, ...],
   "events": [{"label", "onset", "offset"}, ...]}   # event times in seconds, empty if unknown

Why waveforms and why int16:
  * Features are computed on the accelerator (`wler_jax.features.log_mel`) at four FFT scales
    (1024, 512, 2048, 4096) from one waveform transfer, so one stored copy serves every scale
    and the front end stays a config choice instead of being frozen into the data.
  * Stored log-mel features would be 4 scales x 128 bands of float32 per 512-sample hop:
    4 * 128 * 4 B = 2048 B per hop against 512 * 2 B = 1024 B of int16 audio, i.e. twice the
    bytes, and only valid for one front end.
  * int16 (`wler_jax.audio.to_int16`) halves the bytes of float32 audio; its quantisation noise
    (~-96 dBFS) sits far below the log-mel floor that matters for recognition.

Bad input: a file that cannot be decoded (`wler_jax.audio.AudioError`: missing, a broken link,
a directory, empty, unreadable, corrupt, zero samples, non-finite samples, longer than
`MAX_RECORDING_SECONDS`) is skipped, logged by name with its reason, and listed in
`skip_report.json` next to the built data; the rest of the corpus is built (the whole matrix
of bad inputs: docs/reliability.md). A missing or
incomplete manual copy of a corpus raises `ManualDataError` (a `FileNotFoundError`) naming the
exact expected paths.

tfds without TensorFlow: `tfds.features.Audio` imports TensorFlow, so audio is an int16
`Tensor` stored as raw bytes in uncompressed array_record records (zlib inflating ran at ~2,000
audio-s/s per core, array_record's zstd at ~0.6 GB/s: too slow to feed an accelerator; raw
records take ~37 % more disk on noisy audio and read at ~1.8 GB/s per core); builders outside
a tfds package build `tfds.core.DatasetInfo(builder=self, ...)` directly; data is read back
with `builder.as_data_source(split)` (records in key-hash order).
"""
from __future__ import annotations

import abc
import dataclasses
import inspect
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from wler_jax import audio, errors
from wler_jax.audio import AUDIO_EXTENSIONS, is_audio_file  # noqa: F401  (the one list)
from wler_jax.data.datasets import tfds_compat

tfds_compat.install()  # splits over 1 GB spill to disk through tf.io.gfile otherwise

SPLITS = ("train", "validation", "test")
# Longer recordings are skipped at build with the reason: training takes a recording whole
# (one bucket of ~310k frames per hour), far past any accelerator's memory at the paper's
# widths, and a weak label over hours says little. The design's range is 0.6 s to 10 min of
# web audio; predict and embed score any length in chunks.
MAX_RECORDING_SECONDS = 3600.0
SKIP_REPORT_FILE = "skip_report.json"
VERSION = tfds.core.Version("1.1.0")

class ManualDataError(errors.MissingDataError):
    """The user's local copy of a corpus is missing or incomplete; the message names the paths
    (a FileNotFoundError, and an `errors.UserError` for the command lines)."""


class EmptySplitError(errors.DataError):
    """Every recording of a split was skipped, so the split cannot be written."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One recording to decode.

    Attributes:
      id: stable recording id (path relative to the corpus root, or the corpus' own id).
      path: file to decode with `wler_jax.audio.load`.
      labels: weak labels, class indices (sorted, unique).
      events: (label, onset_s, offset_s) triples with the true event times, if known.
    """

    id: str
    path: str
    labels: tuple[int, ...]
    events: tuple[tuple[int, float, float], ...] = ()


@dataclasses.dataclass(eq=False)
class AudioConfig(tfds.core.BuilderConfig):
    """A builder config whose `name` encodes every option that changes the data.

    Attributes:
      class_names: names of the ClassLabel feature, in index order.
      options: the options the config was made from (for reports and reproducibility).
    """

    class_names: tuple[str, ...] = ()
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def features(class_names: Sequence[str]) -> tfds.features.FeaturesDict:
    """The common example schema (see the module docstring)."""
    names = list(class_names)
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(),
        "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding="bytes"),
        "labels": tfds.features.Sequence(tfds.features.ClassLabel(names=names)),
        "events": tfds.features.Sequence({
            "label": tfds.features.ClassLabel(names=names),
            "onset": np.float32,
            "offset": np.float32,
        }),
    })


def make_example(recording_id: str, waveform: np.ndarray, labels: Iterable[int],
                 events: Iterable[tuple[int, float, float]] = ()) -> dict[str, Any]:
    """Builds one example from a float waveform in [-1, 1] at 44.1 kHz (stored as int16)."""
    return {
        "id": recording_id,
        "audio": audio.to_int16(np.asarray(waveform, dtype=np.float32).reshape(-1)),
        "labels": sorted({int(l) for l in labels}),
        "events": [{"label": int(l), "onset": np.float32(on), "offset": np.float32(off)}
                   for l, on, off in events],
    }


def config_name(*parts: object) -> str:
    """A tfds-valid config name (characters [A-Za-z0-9_+.-]) from option parts."""
    text = "-".join(str(p) for p in parts)
    return "".join(c if (c.isalnum() and c.isascii()) or c in "_+.-" else "_" for c in text)


def find_corpus_root(manual_dir: os.PathLike | str, folder: str, marker: str, *, corpus: str,
                     layout: str) -> str:
    """Locates `<manual_dir>/<folder>` (or `manual_dir` itself) holding the file `marker`.

    Args:
      manual_dir: tfds manual directory.
      folder: top folder of the official release (e.g. "UrbanSound8K").
      marker: a file that must exist below the root (e.g. "metadata/UrbanSound8K.csv").
      corpus: human name for messages.
      layout: multi-line description of the expected files, for the error message.
    Raises:
      ManualDataError: naming the exact path that was expected.
    """
    manual_dir = os.fspath(manual_dir)
    for root in (os.path.join(manual_dir, folder), manual_dir):
        if os.path.isfile(os.path.join(root, marker)):
            return root
    expected = os.path.join(manual_dir, folder, marker)
    raise ManualDataError(
        f"{corpus}: the local copy is missing or incomplete: {expected} does not exist.\n"
        f"Nothing is downloaded; put your copy of {corpus} under the manual directory "
        f"{manual_dir} with this layout:\n{layout}\n"
        "and pass manual_dir=<that directory> (wler_jax.data.datasets.build(..., manual_dir=...)).")


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path: os.PathLike | str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")


class Progress:
    """Logs `done/total` files, rate and ETA every ~10% (and at least every `every` files)."""

    def __init__(self, total: int, what: str, every: int = 200):
        self.total, self.what, self.done = int(total), what, 0
        self.step = max(1, min(every, self.total // 10 or 1))
        self.start = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.done % self.step == 0 or self.done == self.total:
            elapsed = time.monotonic() - self.start
            rate = self.done / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            logging.info("%s: %d/%d files (%.1f files/s, ETA %.0f s)", self.what, self.done,
                         self.total, rate, eta)


class AudioBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of every wler_jax builder: schema, decoding with skip reports, progress.

    Subclasses define `config_from_options(**options) -> AudioConfig` (validating options and
    encoding them in the config name) and either `_items(dl_manager) -> {split: [Item]}` or
    their own `_split_generators`.
    """

    VERSION = VERSION
    RELEASE_NOTES = {"1.0.0": "Initial release: int16 44.1 kHz waveforms, weak labels, events.",
                     "1.1.0": "Audio stored as raw int16 bytes instead of zlib, records "
                              "uncompressed (fast reads)."}
    HOMEPAGE = ""
    CITATION = ""
    DESCRIPTION = ""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # tfds' own lookup needs the `importlib_resources` backport for modules inside a
        # package (it is not a dependency); the defining file is all it needs.
        return epath.Path(inspect.getfile(cls))

    def __init__(self, **kwargs):
        self._skipped: list[dict[str, str]] = []
        self._warnings: list[str] = []
        self._reports: dict[str, Any] = {}  # extra json files written next to the data
        super().__init__(**kwargs)

    # --- to implement -------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def config_from_options(cls, **options) -> AudioConfig:
        """Validates the user's options and returns the config that encodes them."""

    def _items(self, dl_manager) -> dict[str, list[Item]]:
        raise NotImplementedError

    # --- tfds hooks ---------------------------------------------------------------------
    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION or (self.__doc__ or "").strip(),
            features=features(self.builder_config.class_names),
            homepage=self.HOMEPAGE or None,
            citation=self.CITATION or None,
        )

    def _split_generators(self, dl_manager):
        splits = self._items(dl_manager)
        out = {}
        for split, items in splits.items():
            if items:
                out[split] = self._generate_examples(items=items, split=split)
            else:
                self.warn(f"split {split!r} has no recordings and is not written")
        return out

    def _generate_examples(self, items: Sequence[Item], split: str) -> Iterator[tuple[str, dict]]:
        progress = Progress(len(items), f"{self.name}/{self.builder_config.name} {split}")
        for item in items:
            try:
                audio.check_length(item.path, MAX_RECORDING_SECONDS)  # from the header
                waveform = audio.load(item.path, warn=lambda m: self.warn(f"{item.id}: {m}"))
            except audio.AudioError as e:
                self.skip(item.id, item.path, e.reason, split)
            else:
                yield item.id, make_example(item.id, waveform, item.labels, item.events)
            progress.update()

    def _download_and_prepare(self, dl_manager, download_config):
        self._skipped, self._warnings = [], []
        try:
            with tfds_compat.uncompressed_array_records():
                super()._download_and_prepare(dl_manager, download_config)
        except AssertionError as e:
            if "No examples were yielded" not in str(e):
                raise
            raise EmptySplitError(
                f"{self.name}/{self.builder_config.name}: {e}; every recording of that split "
                f"was skipped:\n" + "\n".join(
                    f"  {s['path']}: {s['reason']}" for s in self._skipped)) from e
        report = {
            "dataset": self.name,
            "config": self.builder_config.name,
            "options": jsonable(self.builder_config.options),
            "num_skipped": len(self._skipped),
            "skipped": self._skipped,
            "warnings": self._warnings,
        }
        write_json(self.data_path / SKIP_REPORT_FILE, report)
        for name, obj in self._reports.items():
            write_json(self.data_path / name, obj)
        if self._skipped:
            logging.warning("%s/%s: skipped %d file(s); see %s next to the dataset.", self.name,
                            self.builder_config.name, len(self._skipped), SKIP_REPORT_FILE)

    # --- helpers for subclasses ---------------------------------------------------------
    def skip(self, recording_id: str, path: str, reason: str, split: str | None = None) -> None:
        """Records a file that is not built (logged by name and kept for the skip report)."""
        logging.warning("Skipping %s (%s): %s", recording_id, path, reason)
        self._skipped.append({"id": recording_id, "path": str(path), "reason": reason,
                              "split": split or ""})

    def warn(self, message: str) -> None:
        logging.warning("%s: %s", self.name, message)
        self._warnings.append(message)

    def manual_dir(self, dl_manager, *, corpus: str, layout: str) -> str:
        """tfds' manual dir, turning its bare AssertionError into a `ManualDataError`."""
        try:
            return os.fspath(dl_manager.manual_dir)
        except AssertionError as e:
            path = getattr(dl_manager, "_manual_dir", None)
            raise ManualDataError(
                f"{corpus}: the manual directory {path} does not exist or is empty. Nothing is "
                f"downloaded; put your copy of {corpus} there with this layout:\n{layout}\n"
                "and pass manual_dir=<that directory> "
                "(wler_jax.data.datasets.build(..., manual_dir=...)).") from e


def read_reports(data_dir: os.PathLike | str) -> dict[str, Any]:
    """The skip report of a built dataset ({} keys filled with empties if absent)."""
    path = os.path.join(os.fspath(data_dir), SKIP_REPORT_FILE)
    if not os.path.exists(path):
        return {"skipped": [], "warnings": [], "num_skipped": 0, "path": None}
    report = read_json(path)
    report["path"] = path
    return report


def split_by_fold(records: Iterable[tuple[int, Item]], *, validation: Iterable[int],
                  test: Iterable[int]) -> dict[str, list[Item]]:
    """Assigns (fold, item) pairs to train/validation/test by fold number."""
    validation, test = set(validation), set(test)
    out: dict[str, list[Item]] = {s: [] for s in SPLITS}
    for fold, item in records:
        split = "test" if fold in test else "validation" if fold in validation else "train"
        out[split].append(item)
    return out


def check_folds(name: str, folds: Sequence[int], num_folds: int) -> tuple[int, ...]:
    """Validates a fold option (an int or a sequence of ints in 1..num_folds)."""
    if isinstance(folds, (int, np.integer)):
        folds = (int(folds),)
    folds = tuple(sorted({int(f) for f in folds}))
    bad = [f for f in folds if not 1 <= f <= num_folds]
    if bad:
        raise ValueError(f"{name}: folds must be in 1..{num_folds}, got {bad}")
    return folds


def check_split_folds(validation: Sequence[int] | int, test: Sequence[int] | int, num_folds: int,
                      *, names: tuple[str, str] = ("validation_fold", "test_fold")
                      ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validates the validation and test fold options together: each in 1..num_folds, disjoint."""
    val = check_folds(names[0], validation, num_folds)
    test = check_folds(names[1], test, num_folds)
    both = sorted(set(val) & set(test))
    if both:
        raise ValueError(f"{names[0]} and {names[1]} must differ; both contain {both}")
    return val, test


def jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if dataclasses.is_dataclass(obj):
        return jsonable(dataclasses.asdict(obj))
    return str(obj)
