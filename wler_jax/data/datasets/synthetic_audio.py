"""Synthetic weakly labelled recordings with the hard property of web audio (pure numpy).

Why: the paper trains on web recordings whose label says *which* events occur somewhere in
a recording of a few seconds to minutes, not *when*. This module makes such data locally, so
the whole pipeline runs end to end with no download, and it also keeps the true event times,
so the weak-label noise (and temporal localisation) can be measured.

Each of the ten UrbanSound classes is a seeded synthetic sound family with natural variation
(pitch, duration, timbre, level); families overlap in frequency range so that they are
learnable from log-mel spectrograms but not trivially. A recording is a stationary background
bed (coloured 1/f^a noise, optional mains hum and babble texture) plus unlabelled distractors
(clicks, wind gusts, beeps, thuds, rustles) plus 1-4 event classes, each occurring 1-4 times,
at -5..+20 dB SNR against the bed. Events are short relative to the recording, so labelling
every 1.5-s window with the recording's label is wrong most of the time (`label_noise`).

Synopsis:
  for rec in generate_split("train", "cpu", seed=0):
      rec.audio   # float32 [n] at 44.1 kHz, peak < 1
      rec.labels  # sorted class indices (the weak label, the union of the events' labels)
      rec.events  # [Event(label, onset, offset)] in seconds, sorted by onset
  describe("cpu")  # per-split statistics without rendering any audio

Every result is a pure function of its arguments: a recording's event plan comes from
`default_rng([seed, 0])`, its background from `[seed, 1]`, event `i`'s waveform from
`[seed, 2, i]`, and a split's recording seeds from `SeedSequence([seed, split, index])`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import scipy.fft
import scipy.signal
import scipy.special

from wler_jax.geometry import HOP_LENGTH, SAMPLE_RATE, SEGMENT_FRAMES

SR = SAMPLE_RATE
CLASSES: tuple[str, ...] = (
    "air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling",
    "engine_idling", "gun_shot", "jackhammer", "siren", "street_music",
)
SPLITS: tuple[str, ...] = ("train", "validation", "test")
SNR_DB_RANGE = (-5.0, 20.0)  # per event, RMS over the event vs the background bed's RMS
# Log-uniform event duration range per class (seconds), before capping to the recording.
EVENT_SECONDS = {
    0: (1.0, 6.0), 1: (0.3, 1.5), 2: (0.8, 4.0), 3: (0.15, 2.0), 4: (0.5, 4.0),
    5: (1.0, 6.0), 6: (0.3, 1.2), 7: (0.5, 4.0), 8: (1.0, 5.0), 9: (1.0, 6.0),
}
_MIN_EVENT_SECONDS = 0.2
_LENGTH_SIGMAS = 2.5  # the longest/shortest recording sits this many log-sigmas from the median


@dataclasses.dataclass(frozen=True)
class SizePreset:
    """Recordings per split and the (clipped log-normal) recording length distribution."""

    train: int
    validation: int
    test: int
    min_seconds: float
    max_seconds: float
    median_seconds: float


SIZES: dict[str, SizePreset] = {
    # Tests: about 1.5 min of audio in all.
    "smoke": SizePreset(12, 6, 6, min_seconds=1.0, max_seconds=8.0, median_seconds=3.0),
    # Default: a 2-core CPU trains the narrow net in minutes. Evaluation splits are large
    # enough that one run's bootstrap 95 % interval of test mAP is about +-0.03 (it was +-0.06
    # with 80 recordings); generating and scoring them is cheap next to training.
    "cpu": SizePreset(240, 160, 400, min_seconds=1.0, max_seconds=60.0, median_seconds=3.5),
    # Accelerators: ~22 h of audio in all.
    "gpu": SizePreset(4000, 800, 800, min_seconds=1.0, max_seconds=120.0, median_seconds=10.0),
}


@dataclasses.dataclass
class Event:
    """One occurrence of a class, in seconds from the start of the recording."""

    label: int
    onset: float
    offset: float


@dataclasses.dataclass
class Recording:
    """A synthetic recording: audio, weak labels and the true events behind them."""

    id: str
    audio: np.ndarray  # float32 [num_samples] at 44.1 kHz, peak < 1
    labels: list[int]  # sorted unique class indices (union of the events' labels)
    events: list[Event]  # sorted by onset, clipped to [0, duration]


@dataclasses.dataclass(frozen=True)
class _EventPlan:
    label: int
    start: int  # sample of the (unclipped) onset; may be < 0 for an event cut by the start
    length: int  # samples of the whole event
    snr_db: float


# ----------------------------------------------------------------------------- helpers


def _logu(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _unit(x: np.ndarray) -> np.ndarray:
    """Scale to unit RMS (float32)."""
    rms = np.sqrt(np.mean(np.square(x, dtype=np.float64)))
    return (x / max(rms, 1e-12)).astype(np.float32, copy=False)


def _time(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32) / np.float32(SR)


def _smooth(rng: np.random.Generator, n: int, knots_per_s: float, lo: float, hi: float):
    """Piecewise-linear random curve [n] through uniform(lo, hi) knots."""
    m = max(2, int(n / SR * knots_per_s) + 2)
    knots = rng.uniform(lo, hi, m)
    return np.interp(np.arange(n), np.linspace(0, n - 1, m), knots).astype(np.float32)


def _shaped_noise(rng: np.random.Generator, n: int, gain_fn: Callable[[np.ndarray], np.ndarray]):
    """Gaussian noise [n] with amplitude spectrum gain_fn(freqs_hz), unit RMS."""
    m = scipy.fft.next_fast_len(max(n, 16), real=True)
    freqs = np.fft.rfftfreq(m, 1.0 / SR).astype(np.float32)
    spec = rng.standard_normal(freqs.size, dtype=np.float32) + 1j * rng.standard_normal(
        freqs.size, dtype=np.float32)
    spec *= np.asarray(gain_fn(freqs), dtype=np.float32)
    return _unit(scipy.fft.irfft(spec, m)[:n])


def _tone(f_inst, amps: Sequence[float], rng: np.random.Generator, n: int | None = None):
    """Harmonic tone with instantaneous fundamental `f_inst` (Hz, [n] or scalar)."""
    if np.ndim(f_inst) == 0:
        phase = (_time(n) * np.float32(f_inst)) % np.float32(1.0)
        fmax = float(f_inst)
    else:
        phase = (np.cumsum(f_inst, dtype=np.float64) / SR % 1.0).astype(np.float32)
        fmax = float(np.max(f_inst))
    phase *= np.float32(2 * np.pi)
    out = np.zeros(phase.size, np.float32)
    offsets = rng.uniform(0, 2 * np.pi, len(amps)).astype(np.float32)
    for h, a in enumerate(amps, start=1):
        if a > 0 and h * fmax < 0.45 * SR:
            out += np.float32(a) * np.sin(np.float32(h) * phase + offsets[h - 1])
    return out


def _formant_amps(f0: float, n_harm: int, formants, floor: float = 0.03) -> np.ndarray:
    """Harmonic amplitudes shaped by Gaussian formants [(centre_hz, bandwidth_hz, gain)]."""
    f = f0 * np.arange(1, n_harm + 1)
    amps = np.full(n_harm, floor)
    for centre, bw, gain in formants:
        amps += gain * np.exp(-0.5 * ((f - centre) / bw) ** 2)
    return amps


def _fade(x: np.ndarray, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Linear fade in/out (in place, clamped to half the length)."""
    for seconds, rising in ((fade_in_s, True), (fade_out_s, False)):
        k = min(int(seconds * SR), x.size // 2)
        if k > 1:
            ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
            if rising:
                x[:k] *= ramp
            else:
                x[-k:] *= ramp[::-1]
    return x


def _gate(n: int, spans, ramp_s: float = 0.01) -> np.ndarray:
    """Envelope [n]: 1 inside each (start, end) sample span with linear ramps, 0 elsewhere."""
    env = np.zeros(n, np.float32)
    for a, b in spans:
        env[a:b] = _fade(np.ones(b - a, np.float32), ramp_s, ramp_s)
    return env


def _lowpass(fc: float, order: float = 4.0):
    return lambda f: 1.0 / np.sqrt(1.0 + (f / fc) ** order)


def _highpass(fc: float, order: float = 4.0):
    return lambda f: 1.0 / np.sqrt(1.0 + (fc / np.maximum(f, 1.0)) ** order)


# -------------------------------------------------------------------- class synthesizers
# Each takes (rng, n) and returns float32 [n]; the caller scales it to unit RMS.


def _air_conditioner(rng, n):
    """Steady filtered broadband hum plus a fan's blade-pass tonal component."""
    centre, width = _logu(rng, 200, 1500), rng.uniform(0.8, 2.0)
    x = _shaped_noise(rng, n, lambda f: np.exp(
        -0.5 * (np.log2(np.maximum(f, 1.0) / centre) / width) ** 2) * _highpass(40)(f))
    f_fan = _logu(rng, 60, 300) * (1 + 0.004 * _smooth(rng, n, 2, -1, 1))
    fan = _unit(_tone(f_fan, rng.uniform(0.2, 1.0, 4) / np.arange(1, 5), rng))
    x = x + rng.uniform(0.15, 0.6) * fan
    return _fade(x, rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4))


def _car_horn(rng, n):
    """Two simultaneous brassy harmonic tones a third apart, resonant at 2-3.5 kHz; 1-2 honks."""
    f1 = rng.uniform(330, 480)
    ratio = rng.uniform(1.18, 1.30)
    resonance = [(rng.uniform(2000, 3500), rng.uniform(400, 900), rng.uniform(1.0, 3.0))]
    amps = np.arange(1, 13) ** -rng.uniform(0.4, 1.2) + _formant_amps(f1, 12, resonance, 0.0)
    droop = 1 - 0.03 * np.exp(-_time(n) / 0.03)
    x = _tone(f1 * droop, amps, rng) + rng.uniform(0.6, 1.0) * _tone(f1 * ratio * droop, amps, rng)
    x = np.tanh(rng.uniform(0.5, 1.5) * _unit(x))  # mild saturation: brassy
    if n > 0.6 * SR and rng.random() < 0.4:
        a = int(n * rng.uniform(0.3, 0.5))
        b = a + int(n * rng.uniform(0.1, 0.2))
        return x * _gate(n, [(0, a), (b, n)])
    return x * _gate(n, [(0, n)], ramp_s=0.015)


def _children_playing(rng, n):
    """Babble of 2-4 high-pitched voices with glides and syllabic amplitude modulation."""
    x = np.zeros(n, np.float32)
    for _ in range(rng.integers(2, 5)):
        f0 = rng.uniform(230, 420)
        contour = f0 * np.exp(_smooth(rng, n, rng.uniform(2, 5), -0.25, 0.25))
        if rng.random() < 0.3:  # a shriek: a glide up by up to an octave
            contour *= 1 + rng.uniform(0.3, 1.0) * np.clip(_smooth(rng, n, 1.5, -2, 1), 0, None)
        formants = [(rng.uniform(700, 1100), 200, 1.0), (rng.uniform(1600, 3000), 350, 0.6),
                    (rng.uniform(3000, 4200), 500, 0.3)]
        voice = _unit(_tone(contour, _formant_amps(f0, 10, formants), rng))
        syllables = np.clip(_smooth(rng, n, rng.uniform(6, 12), -0.6, 1.0), 0, None) ** 1.5
        x += rng.uniform(0.5, 1.0) * voice * syllables
    return _fade(x, 0.02, 0.05)


def _dog_bark(rng, n):
    """1-4 short formant bursts with a falling pitch and a rough noise component."""
    spans, pos = [], 0
    while len(spans) < 4:
        gap = 0 if not spans else int(rng.uniform(0.1, 0.5) * SR)
        length = int(rng.uniform(0.08, 0.25) * SR)
        if pos + gap + length > n:
            gap, length = (0 if not spans else int(0.1 * SR)), min(length, n - pos - gap)
            if length < int(0.06 * SR):
                break
        spans.append([pos + gap, pos + gap + length])
        pos += gap + length
    if not spans:
        spans = [[0, n]]
    slack = n - spans[-1][1]  # spread leftover time over the gaps (or lengthen a lone bark)
    if len(spans) == 1:
        spans[0][1] = n
    else:
        for i in range(1, len(spans)):
            shift = slack * i // (len(spans) - 1)
            spans[i] = [spans[i][0] + shift, spans[i][1] + shift]
    f0 = rng.uniform(250, 800)
    formants = [(rng.uniform(500, 1000), 250, 1.0), (rng.uniform(1300, 2200), 400, 0.5)]
    amps = _formant_amps(f0, 12, formants)
    x = np.zeros(n, np.float32)
    env_all = np.zeros(n, np.float32)
    for a, b in spans:
        u = np.linspace(0, 1, b - a, dtype=np.float32)
        contour = f0 * rng.uniform(0.9, 1.1) * (1 + 0.8 * u * (1 - u)) * (1 - 0.3 * u)
        env = np.minimum(u * (b - a) / (rng.uniform(0.005, 0.01) * SR), 1.0) * np.exp(
            -u * rng.uniform(2, 4))
        x[a:b] += _unit(_tone(contour, amps, rng)) * env
        env_all[a:b] += env
    noise = _shaped_noise(rng, n, lambda f: np.exp(-0.5 * ((f - formants[0][0]) / 600) ** 2))
    return x + rng.uniform(0.2, 0.6) * noise * env_all


def _drilling(rng, n):
    """High-pitched motor whine with harmonics, jitter, spin-up and broadband grinding."""
    t = _time(n)
    spin_up = 1 - 0.4 * np.exp(-t / rng.uniform(0.05, 0.3))
    jitter = 1 + 0.01 * _smooth(rng, n, 40, -1, 1) + rng.uniform(0, 0.06) * _smooth(rng, n, 1.5, -1, 1)
    amps = np.concatenate([[1.0], rng.uniform(0.1, 0.8, 4)])
    x = _unit(_tone(_logu(rng, 700, 3000) * jitter * spin_up, amps, rng))
    x = x + rng.uniform(0.2, 0.8) * _shaped_noise(rng, n, _highpass(rng.uniform(1500, 4000)))
    x *= 1 + rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * rng.uniform(15, 60) * t)
    return _fade(x, 0.02, 0.1)


def _engine_idling(rng, n):
    """Low-pass rumble amplitude-modulated at the engine's firing rate, plus its pulses."""
    cutoff = rng.uniform(120, 400)
    rumble = _shaped_noise(rng, n, lambda f: _lowpass(cutoff, 6)(f) * _highpass(25)(f))
    rate = rng.uniform(12, 40) * (1 + 0.02 * _smooth(rng, n, 1, -1, 1))
    phase = (np.cumsum(rate, dtype=np.float64) / SR % 1.0).astype(np.float32)
    pulses = (0.5 + 0.5 * np.cos(2 * np.pi * phase)) ** rng.uniform(2, 6)
    pulses = pulses / max(float(pulses.mean()), 1e-6) - 1.0  # zero-mean firing pulse train
    depth = rng.uniform(0.3, 0.8)
    x = rumble * (1 + depth * pulses) + rng.uniform(0.2, 0.6) * _unit(pulses)
    return _fade(x, rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.4))


def _gun_shot(rng, n):
    """1-3 sharp transients with a darkening, decaying noise tail and an optional echo."""
    shots = 1
    if n > 0.6 * SR and rng.random() < 0.35:
        shots = int(rng.integers(2, 4))
    spacing = int(min(rng.uniform(0.15, 0.5) * SR, (n - 0.3 * SR) / max(shots - 1, 1)))
    starts = [i * spacing for i in range(shots)]
    white = rng.standard_normal(n, dtype=np.float32)
    dark = _shaped_noise(rng, n, _lowpass(rng.uniform(400, 2000), 2))
    x = np.zeros(n, np.float32)
    for s in starts:
        m = n - s
        t = _time(m)
        tau = min(rng.uniform(0.04, 0.25), m / SR / 5)
        x[s:] += rng.uniform(0.7, 1.0) * (
            3.0 * white[:m] * np.exp(-t / rng.uniform(0.004, 0.02)) + dark[:m] * np.exp(-t / tau))
    if rng.random() < 0.5:
        delay = int(rng.uniform(0.06, 0.4) * SR)
        if delay < n // 2:
            x[delay:] += rng.uniform(0.15, 0.5) * x[:-delay].copy()
    return x


def _jackhammer(rng, n):
    """Periodic metallic impacts at 10-25 Hz: damped resonances on a jittered pulse train."""
    rate = rng.uniform(10, 25)
    periods = SR / rate * (1 + 0.03 * rng.standard_normal(int(n / SR * rate) + 4))
    pos = (rng.uniform(0, 0.5) * SR / rate + np.cumsum(periods) - periods[0]).astype(int)
    pos = pos[pos < n]
    spikes = np.zeros(n, np.float32)
    spikes[pos] = rng.uniform(0.7, 1.3, pos.size)
    k = int(rng.uniform(0.015, 0.04) * SR)
    t = _time(k)
    kernel = rng.standard_normal(k).astype(np.float32) * np.exp(-t / rng.uniform(0.002, 0.006))
    for _ in range(rng.integers(2, 4)):
        kernel += np.sin(2 * np.pi * _logu(rng, 600, 4000) * t) * np.exp(-t / rng.uniform(0.002, 0.01))
    x = scipy.signal.oaconvolve(spikes, kernel)[:n].astype(np.float32)
    return x + rng.uniform(0.05, 0.3) * _shaped_noise(rng, n, _lowpass(300, 4))


def _siren(rng, n):
    """Swept tone: a slow wail, a fast yelp, or an alternating hi-lo two-tone."""
    t = _time(n)
    kind = rng.choice(3, p=[0.5, 0.35, 0.15])
    if kind == 0:  # wail
        lo = rng.uniform(500, 900)
        hi = lo * rng.uniform(1.5, 2.2)
        sweep = 0.5 - 0.5 * np.cos(2 * np.pi * (t / rng.uniform(2.0, 6.0) + rng.uniform()))
    elif kind == 1:  # yelp: rising sawtooth sweep
        lo = rng.uniform(600, 900)
        hi = lo * rng.uniform(1.5, 2.0)
        sweep = ((t / rng.uniform(0.12, 0.4) + rng.uniform()) % 1.0) ** 0.7
    else:  # hi-lo
        lo = rng.uniform(450, 800)
        hi = lo * rng.uniform(1.2, 1.4)
        sweep = ((t / rng.uniform(0.4, 0.8) + rng.uniform()) % 1.0 > 0.5).astype(np.float32)
    amps = [1.0, rng.uniform(0, 0.5), rng.uniform(0, 0.3), rng.uniform(0, 0.2)]
    return _fade(_tone(lo + (hi - lo) * sweep, amps, rng), 0.05, 0.1)


def _street_music(rng, n):
    """A pentatonic melody of harmonic notes in rhythm, with optional bass and kick drum."""
    beat = int(60.0 / rng.uniform(80, 160) * SR)
    base = _logu(rng, 150, 400)
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16, 19, 21])
    amps = np.arange(1, 9) ** -rng.uniform(0.7, 2.0) * rng.uniform(0.5, 1.0, 8)
    pluck, tau = rng.random() < 0.5, rng.uniform(0.08, 0.4)
    x = np.zeros(n, np.float32)
    pos, step = 0, int(rng.integers(0, 5))
    while pos < n:
        length = min(int(beat * rng.choice([0.5, 1, 1, 2])), n - pos)
        step = int(np.clip(step + rng.integers(-2, 3), 0, scale.size - 1))
        note = _tone(base * 2 ** (scale[step] / 12), amps, rng, n=length)
        t = _time(length)
        env = np.exp(-t / tau) if pluck else np.ones(length, np.float32)
        x[pos:pos + length] += _fade(note * env, 0.01, 0.03)
        pos += length
    t_beat = _time(beat)
    if rng.random() < 0.5:  # bass line, one plucked note per beat
        for b in range(0, n, beat):
            m = min(beat, n - b)
            f = base / 2 * 2 ** (scale[rng.integers(0, 5)] / 12)
            x[b:b + m] += 0.6 * _tone(f, [1.0, 0.5, 0.25], rng, n=m) * np.exp(-t_beat[:m] / 0.15)
    if rng.random() < 0.4:  # kick drum on the beat
        kick = np.sin(2 * np.pi * 60 * t_beat) * np.exp(-t_beat / 0.06)
        for b in range(0, n, beat):
            m = min(beat, n - b)
            x[b:b + m] += 1.5 * kick[:m]
    return x


_SYNTHS = (_air_conditioner, _car_horn, _children_playing, _dog_bark, _drilling,
           _engine_idling, _gun_shot, _jackhammer, _siren, _street_music)


def synthesize_event(label: int, duration_s: float, seed: int) -> np.ndarray:
    """One isolated occurrence of class `label`, without background.

    Args:
      label: class index into CLASSES.
      duration_s: length in seconds.
      seed: non-negative int; the waveform is a pure function of the arguments.
    Returns:
      float32 [round(duration_s * 44100)] at unit RMS.
    """
    n = max(1, int(round(duration_s * SR)))
    return _unit(_SYNTHS[label](np.random.default_rng(seed), n))


# -------------------------------------------------------------------------- background


def _distractor(rng, n):
    """A non-target sound: click cluster, wind gust, beep, thud or rustle (float32 [n])."""
    kind = rng.integers(0, 5)
    t = _time(n)
    if kind == 0:  # clicks
        x = np.zeros(n, np.float32)
        for p in rng.integers(0, n, rng.integers(1, 7)):
            m = min(int(rng.uniform(0.001, 0.005) * SR), n - p)
            x[p:p + m] += rng.standard_normal(m).astype(np.float32) * np.linspace(1, 0, m)
        return x
    if kind == 1:  # wind gust
        env = np.sin(np.pi * t / t[-1]) ** 2 if n > 1 else np.ones(n, np.float32)
        return _shaped_noise(rng, n, _lowpass(rng.uniform(100, 400), 2)) * env
    if kind == 2:  # beep(s)
        return _fade(np.sin(2 * np.pi * rng.uniform(1000, 4000) * t) * (
            (t * rng.uniform(2, 6)) % 1.0 < 0.5), 0.005, 0.005)
    if kind == 3:  # thud (door, footstep)
        return _shaped_noise(rng, n, _lowpass(rng.uniform(80, 300), 4)) * np.exp(
            -t / rng.uniform(0.03, 0.12))
    return _shaped_noise(rng, n, _highpass(rng.uniform(2000, 6000))) * _smooth(rng, n, 10, 0, 1)


_DISTRACTOR_SECONDS = (0.1, 3.0)


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """The background bed at unit RMS plus unlabelled distractors (float32 [n])."""
    alpha, corner = rng.uniform(0.6, 1.8), rng.uniform(4000, 16000)
    bed = _shaped_noise(rng, n, lambda f: np.maximum(f, 20.0) ** (-alpha / 2)
                        * _highpass(15)(f) * _lowpass(corner)(f))
    if rng.random() < 0.35:  # mains hum: one period of 50/60 Hz with harmonics, tiled
        period = SR // (50 if rng.random() < 0.5 else 60)
        one = _tone(SR / period, rng.uniform(0, 1, 8) / np.arange(1, 9) ** 0.5, rng, n=period)
        bed += 10 ** (rng.uniform(-25, -5) / 20) * _unit(np.resize(one, n))
    if rng.random() < 0.4:  # distant babble: speech-shaped noise with syllabic modulation
        babble = _shaped_noise(rng, n, lambda f: np.exp(-0.5 * (np.log2(np.maximum(
            f, 1.0) / 700) / 1.2) ** 2)) * _smooth(rng, n, rng.uniform(6, 10), 0.3, 1.0)
        bed += 10 ** (rng.uniform(-12, 0) / 20) * _unit(babble)
    bed = _unit(bed)
    for _ in range(rng.poisson(n / SR / 8)):
        m = min(n, int(_logu(rng, *_DISTRACTOR_SECONDS) * SR))
        if m < 2:
            continue
        start = int(rng.integers(0, n - m + 1))
        bed[start:start + m] += 10 ** (rng.uniform(-5, 10) / 20) * _unit(_distractor(rng, m))
    return bed


# ------------------------------------------------------------------------- recordings


def _plan_events(seed: int, n: int, rng_labels: Sequence[int] | None) -> list[_EventPlan]:
    """Which classes occur, when, for how long and how loud (no audio)."""
    rng = np.random.default_rng([seed, 0])
    duration = n / SR
    forced = sorted({int(c) for c in (rng_labels or ())})
    if any(not 0 <= c < len(CLASSES) for c in forced):
        raise ValueError(f"rng_labels must be class indices in [0, {len(CLASSES)}), got {forced}")
    k = max(int(rng.choice([1, 2, 3, 4], p=[0.35, 0.35, 0.2, 0.1])), len(forced))
    others = [c for c in range(len(CLASSES)) if c not in forced]
    classes = forced + [int(c) for c in rng.permutation(others)[:k - len(forced)]]
    plans: list[_EventPlan] = []
    for c in classes:
        for _ in range(1 + min(3, int(rng.poisson(0.1 + duration / 60)))):
            d = min(_logu(rng, *EVENT_SECONDS[c]), duration * rng.uniform(0.1, 0.5))
            length = max(1, int(round(max(d, min(_MIN_EVENT_SECONDS, duration)) * SR)))
            for _attempt in range(10):  # avoid overlapping occurrences of the same class
                if rng.random() < 0.1:  # cut by the recording's start or end (web clips)
                    start = int(rng.integers(-int(0.4 * length), n - int(0.6 * length) + 1))
                else:
                    start = int(rng.integers(0, n - length + 1))
                if all(p.label != c or start >= p.start + p.length or p.start >= start + length
                       for p in plans):
                    break
            plans.append(_EventPlan(c, start, length, float(rng.uniform(*SNR_DB_RANGE))))
    return plans


def _events_from_plans(plans: Sequence[_EventPlan], n: int) -> list[Event]:
    events = [Event(p.label, max(p.start, 0) / SR, min(p.start + p.length, n) / SR) for p in plans]
    return sorted(events, key=lambda e: (e.onset, e.label, e.offset))


def generate_recording(seed: int, duration_s: float, *,
                       rng_labels: Sequence[int] | None = None) -> Recording:
    """Synthesize one weakly labelled recording; a pure function of its arguments.

    Args:
      seed: non-negative int.
      duration_s: length in seconds (rounded to whole samples at 44.1 kHz).
      rng_labels: class indices the recording must contain (used for class coverage of a
        split); further classes, up to 1-4 in all, are drawn from `seed`.
    Returns:
      A Recording with id f"seed{seed}", float32 audio with peak in [0.1, 0.9], the weak
      labels and the true events.
    """
    n = max(1, int(round(duration_s * SR)))
    plans = _plan_events(seed, n, rng_labels)
    rng = np.random.default_rng([seed, 1])
    audio = _background(rng, n)
    for i, p in enumerate(plans):
        event = _unit(_SYNTHS[p.label](np.random.default_rng([seed, 2, i]), p.length))
        a, b = max(p.start, 0), min(p.start + p.length, n)
        audio[a:b] += np.float32(10 ** (p.snr_db / 20)) * event[a - p.start:b - p.start]
    audio *= np.float32(_logu(rng, 0.1, 0.9) / max(float(np.max(np.abs(audio))), 1e-12))
    events = _events_from_plans(plans, n)
    return Recording(id=f"seed{seed}", audio=audio, labels=sorted({e.label for e in events}),
                     events=events)


def _preset(size: str | SizePreset) -> SizePreset:
    if isinstance(size, SizePreset):
        return size
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZES)} or a SizePreset")
    return SIZES[size]


def _split_specs(split: str, size: str | SizePreset, seed: int):
    """[(id, recording seed, duration_s, required labels)] of a split, without audio."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    preset, code = _preset(size), SPLITS.index(split)
    count = getattr(preset, split)
    rng = np.random.default_rng([seed, code, 1 << 40])
    # Log-normal lengths truncated at +-_LENGTH_SIGMAS, with the log-scale stretched separately
    # above and below the median so that the median is exact and a split spans [min, max].
    # Stratified quantiles (one per 1/count slice, end points pinned) keep small splits typical.
    u = (np.arange(count) + rng.uniform(size=count)) / max(count, 1)
    if count > 1:
        u[0], u[-1] = 0.0, 1.0
    edge = scipy.special.ndtr(_LENGTH_SIGMAS)
    z = scipy.special.ndtri(np.clip(1 - edge + (2 * edge - 1) * u, 1e-12, 1 - 1e-12))
    z = np.clip(z / _LENGTH_SIGMAS, -1.0, 1.0)
    up, down = preset.max_seconds / preset.median_seconds, preset.median_seconds / preset.min_seconds
    durations = rng.permutation(preset.median_seconds * np.where(z > 0, up ** z, down ** z))
    perm = rng.permutation(len(CLASSES))  # round-robin class coverage
    specs = []
    for i in range(count):
        forced = ([int(perm[j]) for j in range(i, len(CLASSES), count)] if i < len(CLASSES)
                  else [int(perm[i % len(CLASSES)])])
        rec_seed = int(np.random.SeedSequence([seed, code, i]).generate_state(1, np.uint64)[0])
        specs.append((f"{split}_{i:05d}", rec_seed, float(durations[i]), forced))
    return specs


def generate_split(split: str, size: str | SizePreset = "cpu", seed: int = 0) -> Iterator[Recording]:
    """Yield the recordings of a split, deterministically from (split, size, seed).

    Every class occurs in every split that has at least 10 recordings' worth of labels (all
    splits of "smoke", "cpu" and "gpu"); ids are f"{split}_{i:05d}"; splits never share a
    recording (their seeds differ).
    """
    for rec_id, rec_seed, duration, forced in _split_specs(split, size, seed):
        yield dataclasses.replace(generate_recording(rec_seed, duration, rng_labels=forced),
                                  id=rec_id)


# ------------------------------------------------------------------ weak-label noise


def slat_window_labels(num_samples: int, events: Sequence[Event],
                       window_frames: int = SEGMENT_FRAMES,
                       hop_frames: int = SEGMENT_FRAMES) -> list[frozenset[int]]:
    """True label set of each SLAT window of a recording.

    Windows cover frames [k * hop, k * hop + window) of the T = 1 + n // 512 frames (a
    recording shorter than one window has exactly one, padded); frame f is at f * 512 / sr
    seconds. A class is present in a window when one of its events overlaps it.
    """
    frames = max(1 + num_samples // HOP_LENGTH, window_frames)
    frame_s = HOP_LENGTH / SR
    sets = []
    for k in range((frames - window_frames) // hop_frames + 1):
        start, end = k * hop_frames * frame_s, (k * hop_frames + window_frames) * frame_s
        sets.append(frozenset(e.label for e in events if e.onset < end and e.offset > start))
    return sets


def label_noise(recordings, **window_kwargs) -> dict:
    """How wrong the recording label is for SLAT windows.

    Args:
      recordings: iterable of (num_samples, events) pairs or Recordings.
      **window_kwargs: window_frames / hop_frames for `slat_window_labels`.
    Returns:
      {"windows": number of windows, "frac_windows_exact": fraction whose true label set
       equals the recording's label set, "frac_pairs_present": fraction of (window, recording
       label) pairs where the event is actually in the window, "frac_pairs_present_recording_mean":
       the same averaged per recording}.
    """
    windows = exact = pairs = present = 0
    per_recording = []
    for rec in recordings:
        n, events = (rec.audio.size, rec.events) if isinstance(rec, Recording) else rec
        labels = frozenset(e.label for e in events)
        sets = slat_window_labels(n, events, **window_kwargs)
        hits = sum(len(s & labels) for s in sets)
        windows += len(sets)
        exact += sum(s == labels for s in sets)
        pairs += len(sets) * len(labels)
        present += hits
        per_recording.append(hits / max(len(sets) * len(labels), 1))
    return {"windows": windows, "frac_windows_exact": exact / max(windows, 1),
            "frac_pairs_present": present / max(pairs, 1),
            "frac_pairs_present_recording_mean": float(np.mean(per_recording)) if per_recording
            else 0.0}


def describe(size: str | SizePreset = "cpu", seed: int = 0) -> dict:
    """Statistics of every split, computed from the event plans (no audio is rendered).

    Returns:
      {"size", "seed", "splits": {split: {count, total_seconds, median/min/max_seconds,
       recordings_per_class, events_per_class, mean_labels, mean_events, event_seconds_median,
       event_time_fraction, windows, frac_windows_exact, frac_pairs_present, ...}},
       "total_seconds"}.
    """
    out = {"size": size if isinstance(size, str) else dataclasses.asdict(size), "seed": seed,
           "splits": {}}
    for split in SPLITS:
        items = []
        for _, rec_seed, duration, forced in _split_specs(split, size, seed):
            n = max(1, int(round(duration * SR)))
            items.append((n, _events_from_plans(_plan_events(rec_seed, n, forced), n)))
        secs = np.array([n / SR for n, _ in items])
        events = [e for _, evs in items for e in evs]
        covered = 0.0  # fraction of recording time covered by at least one event
        for n, evs in items:
            mask = np.zeros(int(np.ceil(n / SR * 100)) + 1, bool)  # 10-ms grid
            for e in evs:
                mask[int(e.onset * 100):int(np.ceil(e.offset * 100))] = True
            covered += mask.mean() * n / SR
        out["splits"][split] = {
            "count": len(items), "total_seconds": float(secs.sum()),
            "median_seconds": float(np.median(secs)), "min_seconds": float(secs.min()),
            "max_seconds": float(secs.max()),
            "recordings_per_class": {name: sum(any(e.label == c for e in evs) for _, evs in items)
                                     for c, name in enumerate(CLASSES)},
            "events_per_class": {name: sum(e.label == c for e in events)
                                 for c, name in enumerate(CLASSES)},
            "mean_labels": float(np.mean([len({e.label for e in evs}) for _, evs in items])),
            "mean_events": len(events) / len(items),
            "event_seconds_median": float(np.median([e.offset - e.onset for e in events])),
            "event_time_fraction": float(covered / secs.sum()),
            **label_noise(items),
        }
    out["total_seconds"] = sum(s["total_seconds"] for s in out["splits"].values())
    return out
