"""Shared test helpers: small real-valued audio and a narrow network width."""
import numpy as np
import pytest

SR = 44_100
TEST_WIDTH = 0.25  # narrow network for CPU tests; the paper's widths are width=1.0


def tones_and_noise(num_samples: int, seed: int = 0) -> np.ndarray:
    """Noise plus a few tones and a chirp: real-valued test audio with structure at every scale."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / SR
    x = 0.05 * rng.standard_normal(num_samples)
    for f, a in ((220.0, 0.2), (1830.0, 0.1), (6000.0, 0.05)):
        x += a * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    x += 0.1 * np.sin(2 * np.pi * (300 * t + 2000 * t ** 2))
    return (x * np.clip(np.sin(np.pi * t * 3) + 0.5, 0, None)).astype(np.float32)


@pytest.fixture
def audio_factory():
    return tones_and_noise
