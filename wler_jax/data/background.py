"""Background recordings of a user's site (`data.background`), cut into excerpts for training.

The train step mixes these excerpts into training recordings at a random SNR or uses them alone
as recordings without events (`training.augment`), so a model learns that the site's noise is
not an event. The folder's audio is decoded once (44.1 kHz mono int16, about 5 MB per minute)
and each training batch gets one excerpt per row, drawn from (seed, epoch, the batch's
recordings): a resumed run draws the same excerpts as an uninterrupted one.
"""
from __future__ import annotations

import os

import numpy as np
from absl import logging

from wler_jax import audio, errors

MIN_SECONDS = 1.0  # shorter background files are skipped (too short to be a site's noise)


class BackgroundBank:
    """Every readable recording under a folder, concatenated, for random excerpts."""

    def __init__(self, folder: str, *, seed: int = 0):
        if not os.path.isdir(folder):
            raise errors.DataError(f"data.background={folder!r}: not a folder")
        paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder)
                       for name in names if audio.is_audio_file(name))
        waves, skipped = [], []
        for path in paths:
            try:
                wave = audio.load(path)
            except audio.AudioError as e:  # one bad file never stops the others
                skipped.append(str(e))
                continue
            if len(wave) < MIN_SECONDS * audio.SAMPLE_RATE:
                skipped.append(f"{path}: shorter than {MIN_SECONDS:g} s")
                continue
            waves.append(audio.to_int16(wave))
        for reason in skipped:
            logging.warning("data.background: skipped %s", reason)
        if not waves:
            raise errors.DataError(f"data.background={folder!r}: no readable recording of at "
                                   f"least {MIN_SECONDS:g} s ({len(paths)} audio file(s))")
        self.folder, self.seed = folder, seed
        self.starts = np.cumsum([0] + [len(w) for w in waves[:-1]])
        self.lengths = np.array([len(w) for w in waves])
        self.samples = np.concatenate(waves)
        logging.info("data.background: %d recording(s), %.1f min from %s", len(waves),
                     len(self.samples) / audio.SAMPLE_RATE / 60, folder)

    def excerpts(self, width: int, indices: np.ndarray, epoch: int) -> np.ndarray:
        """int16 [len(indices), width]: one excerpt per batch row, from a random recording at a
        random offset (looped when the recording is shorter than `width`). Drawn from
        (seed, epoch, indices), so the same batch of the same epoch gets the same excerpts."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        rng = np.random.default_rng([self.seed, epoch, *(indices + 1).tolist()])
        which = rng.integers(len(self.lengths), size=len(indices))
        offsets = rng.random(len(indices))
        out = np.empty((len(indices), width), np.int16)
        for row, (k, u) in enumerate(zip(which, offsets)):
            start, length = int(self.starts[k]), int(self.lengths[k])
            first = int(u * max(length - width, 0)) if length >= width else int(u * length)
            pos = (first + np.arange(width)) % length
            out[row] = self.samples[start + pos]
        return out
