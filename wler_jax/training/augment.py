"""Training-time augmentation that keeps weak labels true, run on the device inside the train step.

Waveform level (`augment_waveforms`): a site's background noise mixed in at a random SNR, or a
background excerpt alone as a recording with no event (a negative); mixing two recordings with
the union of their labels; random gain. Feature level (`spec_augment`): SpecAugment's time and
frequency masks on the log-mel input (Park et al. 2019). Each is off at its default; the
config's `input.*` fields set them (`Augmentation.from_config`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from wler_jax.geometry import from_int16, num_frames_for_samples


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What the train step does to each batch (all off by default).

    mix_prob: probability that a recording gets its batch neighbour mixed in (union label).
    gain_db: random gain, uniform in +-gain_db dB per recording.
    background_prob: probability that a recording gets a background excerpt (the batch's
      "background" rows, `data.background`) added at an SNR uniform in `background_snr_db`.
    negative_prob: probability that a recording is replaced by its background excerpt alone,
      with an empty label (a recording of the site's noise without any event).
    freq_masks, freq_mask_bands: SpecAugment frequency masks per example, each up to this many
      of the 128 mel bands.
    time_masks, time_mask_frames: SpecAugment time masks per example, each up to this many
      frames (inside the recording).
    """
    mix_prob: float = 0.0
    gain_db: float = 0.0
    background_prob: float = 0.0
    background_snr_db: tuple[float, float] = (0.0, 20.0)
    negative_prob: float = 0.0
    freq_masks: int = 0
    freq_mask_bands: int = 16
    time_masks: int = 0
    time_mask_frames: int = 32

    @classmethod
    def from_config(cls, config) -> Augmentation:
        """The `input.*` augmentation fields of a run's config (the background ones only when
        `data.background` names a folder)."""
        i = config.input
        background = bool(config.data.get("background"))
        return cls(mix_prob=i.mix_prob, gain_db=i.gain_db,
                   background_prob=i.background_prob if background else 0.0,
                   background_snr_db=(i.background_snr_low_db, i.background_snr_high_db),
                   negative_prob=i.negative_prob if background else 0.0, freq_masks=i.freq_masks,
                   freq_mask_bands=i.freq_mask_bands, time_masks=i.time_masks,
                   time_mask_frames=i.time_mask_frames)

    @property
    def uses_background(self) -> bool:
        """True when batches must carry background excerpts (`data.background`)."""
        return self.background_prob > 0 or self.negative_prob > 0

    @property
    def on_waveforms(self) -> bool:
        return self.mix_prob > 0 or self.gain_db > 0 or self.uses_background

    @property
    def on_features(self) -> bool:
        return (self.freq_masks > 0 and self.freq_mask_bands > 0) or (
            self.time_masks > 0 and self.time_mask_frames > 0)


def _rms(audio: jax.Array, valid: jax.Array) -> jax.Array:
    """RMS of each row over its valid samples (1e-8 for silent or empty rows)."""
    power = (jnp.square(audio) * valid).sum(-1) / jnp.maximum(valid.sum(-1), 1)
    return jnp.maximum(jnp.sqrt(power), 1e-8)


def augment_waveforms(batch: dict, rng: jax.Array, aug: Augmentation) -> dict:
    """`aug`'s waveform augmentations of a batch (int16 or float audio; float out).

    Order: negatives (a row becomes its background excerpt, label emptied), then background
    mixing (excerpt scaled to a random SNR below the row's own RMS), then mixing with the batch
    neighbour (roll by one; the batch is one length bucket, so lengths are alike; the label
    becomes the union, exactly what a weak label of the mixture says), then gain. The excerpt
    is cut to the row's length, so samples past a recording's end stay zero and padding rows
    (weight 0) stay empty.
    """
    if not aug.on_waveforms:
        return batch
    k_neg, k_bg, k_snr, k_mix, k_lvl, k_gain = jax.random.split(rng, 6)
    audio = batch["audio"]
    if audio.dtype == jnp.int16:
        audio = from_int16(audio)
    n, labels, num_frames = batch["num_samples"], batch["labels"], batch["num_frames"]
    b, width = audio.shape
    real = batch["weight"] > 0
    if aug.uses_background:
        if "background" not in batch:
            raise ValueError("background_prob / negative_prob > 0 need batches with background "
                             "excerpts (set data.background to a folder of recordings)")
        valid = (jnp.arange(width)[None, :] < n[:, None]).astype(audio.dtype)
        noise = from_int16(batch["background"]) * valid
        if aug.negative_prob > 0:
            neg = jax.random.bernoulli(k_neg, aug.negative_prob, (b,)) & real
            audio = jnp.where(neg[:, None], noise, audio)
            labels = jnp.where(neg[:, None], 0.0, labels)
        else:
            neg = jnp.zeros((b,), bool)
        if aug.background_prob > 0:
            add = jax.random.bernoulli(k_bg, aug.background_prob, (b,)) & real & ~neg
            low, high = aug.background_snr_db
            snr = jax.random.uniform(k_snr, (b,), minval=low, maxval=high)
            scale = _rms(audio, valid) / _rms(noise, valid) * 10.0 ** (-snr / 20.0)
            audio = audio + jnp.where(add, scale, 0.0)[:, None] * noise
    if aug.mix_prob > 0 and b > 1:
        mix = jax.random.bernoulli(k_mix, aug.mix_prob, (b,)) & real & jnp.roll(real, -1)
        level = 10.0 ** (jax.random.uniform(k_lvl, (b,), minval=-6.0, maxval=0.0) / 20.0)
        audio = audio + jnp.where(mix, level, 0.0)[:, None] * jnp.roll(audio, -1, axis=0)
        labels = jnp.where(mix[:, None], jnp.maximum(labels, jnp.roll(labels, -1, axis=0)), labels)
        n = jnp.where(mix, jnp.maximum(n, jnp.roll(n, -1)), n)
        num_frames = jnp.where(mix, num_frames_for_samples(n), num_frames).astype(num_frames.dtype)
    if aug.gain_db > 0:
        gain = 10.0 ** (jax.random.uniform(k_gain, (b,), minval=-aug.gain_db,
                                           maxval=aug.gain_db) / 20.0)
        audio = audio * gain[:, None]
    out = {**batch, "audio": audio, "num_samples": n, "labels": labels, "num_frames": num_frames}
    out.pop("background", None)
    return out


def _spans(rng: jax.Array, count: int, max_width: int, size: int, limit: jax.Array) -> jax.Array:
    """[N, size] bool: the union of `count` random spans per row, each of width uniform in
    [0, max_width] and wholly inside [0, limit) of its row (clipped when limit < width)."""
    k_w, k_s = jax.random.split(rng)
    rows = limit.shape[0]
    width = jax.random.randint(k_w, (rows, count), 0, max_width + 1)
    width = jnp.minimum(width, limit[:, None])
    room = (limit[:, None] - width + 1).astype(jnp.float32)
    start = jnp.floor(jax.random.uniform(k_s, (rows, count)) * room).astype(jnp.int32)
    pos = jnp.arange(size)[None, None, :]
    return ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(1)


def spec_augment(features: jax.Array, num_frames: jax.Array, rng: jax.Array,
                 aug: Augmentation) -> jax.Array:
    """SpecAugment's masks on log-mel examples [N, T, M]: `aug.freq_masks` bands and
    `aug.time_masks` frame spans per example set to that example's mean log-mel (over its
    valid frames; a masked region then reads as neither loud nor silent). Masks stay inside
    each example's `num_frames`, so padding frames are never touched."""
    if not aug.on_features:
        return features
    n, t, m = features.shape
    valid = (jnp.arange(t)[None, :] < num_frames[:, None])[..., None]
    fill = (features * valid).sum((1, 2)) / jnp.maximum(num_frames * m, 1)
    k_f, k_t = jax.random.split(rng)
    mask = jnp.zeros((n, t, m), bool)
    if aug.freq_masks > 0 and aug.freq_mask_bands > 0:
        mask = mask | _spans(k_f, aug.freq_masks, min(aug.freq_mask_bands, m), m,
                             jnp.full((n,), m, jnp.int32))[:, None, :]
    if aug.time_masks > 0 and aug.time_mask_frames > 0:
        mask = mask | _spans(k_t, aug.time_masks, aug.time_mask_frames, t,
                             num_frames.astype(jnp.int32))[:, :, None]
    return jnp.where(mask & valid, fill[:, None, None].astype(features.dtype), features)


NONE = Augmentation()  # every augmentation off (the default)
