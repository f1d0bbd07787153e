"""The embedded synthetic dataset as a tfds builder (generated locally, nothing downloaded).

Recordings come from `wler_jax.data.datasets.synthetic_audio.generate_split(split, size, seed)`:
weak labels (the classes present somewhere in the recording) plus the true event times, so the
pipeline runs end to end with no data and localisation can be evaluated. Each (size, seed)
pair is its own config (`<size>-seed<seed>`), so changing either never reuses a stale build;
the data is a pure function of the pair.
"""
from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from wler_jax.data.datasets import common, synthetic_audio


class WlerSynthetic(common.AudioBuilder, skip_registration=True):
    """Synthetic weakly labelled recordings of the ten UrbanSound classes, with event times."""

    # Its own version: a size preset that changes its splits must not reuse an older build
    # of the same config name (`cpu-seed0`).
    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {**common.AudioBuilder.RELEASE_NOTES,
                     "1.2.0": "cpu size: validation 160 and test 400 recordings (were 80 and 80)."}

    @classmethod
    def config_from_options(cls, *, size: str | synthetic_audio.SizePreset = "cpu",
                            seed: int = 0) -> common.AudioConfig:
        """Args: size: a `synthetic_audio.SIZES` name ("smoke", "cpu", "gpu") or a SizePreset;
        seed: non-negative int."""
        seed = int(seed)
        if seed < 0:
            raise ValueError(f"synthetic: seed must be >= 0, got {seed}")
        if isinstance(size, synthetic_audio.SizePreset):
            preset, tag = size, "custom" + common.config_name(
                *(f"{v:g}" for v in dataclasses.astuple(size))).replace("-", "_")
        elif size in synthetic_audio.SIZES:
            preset, tag = synthetic_audio.SIZES[size], size
        else:
            raise ValueError(f"synthetic: unknown size {size!r}; expected one of "
                             f"{sorted(synthetic_audio.SIZES)} or a SizePreset")
        return common.AudioConfig(
            name=common.config_name(tag, f"seed{seed}"),
            description=f"Synthetic recordings, size {tag} ({preset}), seed {seed}.",
            class_names=tuple(synthetic_audio.CLASSES),
            options={"size": tag, "preset": dataclasses.asdict(preset), "seed": seed})

    def _split_generators(self, dl_manager):
        del dl_manager  # generated locally
        return {split: self._generate_synthetic(split) for split in common.SPLITS
                if getattr(self._preset(), split) > 0}

    def _preset(self) -> synthetic_audio.SizePreset:
        return synthetic_audio.SizePreset(**self.builder_config.options["preset"])

    def _generate_synthetic(self, split: str):
        opts = self.builder_config.options
        progress = common.Progress(getattr(self._preset(), split),
                                   f"{self.name}/{self.builder_config.name} {split}")
        for rec in synthetic_audio.generate_split(split, self._preset(), seed=opts["seed"]):
            events = [(e.label, e.onset, e.offset) for e in rec.events]
            yield rec.id, common.make_example(rec.id, rec.audio, rec.labels, events)
            progress.update()

    def _generate_examples(self, **kwargs):  # not used: see _generate_synthetic
        raise NotImplementedError
