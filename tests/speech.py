"""One spoken English sentence at 16 kHz (eSpeak NG, resampled), for the metric and vocoder tests."""

import functools

import librosa
import numpy as np

from unispeech_jax.data.audio import SAMPLE_RATE
from unispeech_jax.data.espeak import ESpeak


@functools.lru_cache(maxsize=4)
def sentence(text: str = "The quick brown fox jumps over the lazy dog.") -> np.ndarray:
    """float32 [S] in [-1, 1], read-only (cached)."""
    engine = ESpeak()
    engine.set_voice("en")
    audio = engine.synth(text).astype(np.float32) / 32768.0
    audio = librosa.resample(audio, orig_sr=engine.rate, target_sr=SAMPLE_RATE)
    audio.setflags(write=False)
    return audio


def add_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """x + white Gaussian noise scaled to `snr_db` against x's mean power."""
    noise = np.random.default_rng(seed).standard_normal(len(x))
    noise *= np.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)
