"""Degrading clean speech: additive noise at a given SNR and room reverberation.

One implementation for the two places that degrade speech: the corpus generator's noisy
copies (data/shards.py, `--noise-snr`/`--reverb`) and training augmentation
(data/augment.py). Every draw comes from the generator passed in, so both stay reproducible.

Noise kinds: coloured noise (power ~ 1/f**e), babble (other utterances looped, shifted and
summed) and windows of a user's recordings (`AudioFolder`, any *.wav under a folder, as in
MUSAN's layout). Rooms: a synthetic impulse response (exponentially decaying noise, RT60
0.2-0.7 s, after a unit direct path) or a user's measured ones.
"""

from __future__ import annotations

import functools
import pathlib

import numpy as np
import soundfile as sf
import soxr

from unispeech_jax.data.audio import SAMPLE_RATE
from unispeech_jax.data.stats import DataError

BABBLE_TALKERS = 4


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """float64 [n] unit-std noise with power ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n), 1.0 / n)
    noise = np.fft.irfft(spec / f ** (exponent / 2), n)
    return noise / (np.std(noise) + 1e-12)


def babble(n: int, others: list[np.ndarray], rng: np.random.Generator) -> np.ndarray | None:
    """float64 [n] unit-std sum of up to BABBLE_TALKERS of `others` (each looped to n samples
    and circularly shifted), or None when there are none or they are silent."""
    if not others:
        return None
    noise = np.zeros(n)
    for idx in rng.choice(len(others), size=min(BABBLE_TALKERS, len(others)), replace=False):
        noise += np.roll(np.resize(others[idx], n), int(rng.integers(n)))
    std = np.std(noise)
    return noise / std if std > 0 else None


def make_noise(n: int, others: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """float64 [n] unit-std white, pink, brown or babble noise (babble falls back to brown
    when `others` has nothing to offer)."""
    kind = ("white", "pink", "brown", "babble")[int(rng.integers(4))]
    if kind == "babble":
        noise = babble(n, others, rng)
        if noise is not None:
            return noise
    return coloured_noise(n, {"white": 0.0, "pink": 1.0}.get(kind, 2.0), rng)


def noise_at_snr(noise: np.ndarray, signal_power: float, snr_db: float) -> np.ndarray:
    """`noise` (unit std) scaled so that signal_power / its power is `snr_db`."""
    return noise * np.sqrt(signal_power / 10 ** (snr_db / 10))


def synthetic_rir(rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float64 [L] room response: exponentially decaying noise, RT60 from U[0.2, 0.7] s,
    0.1-0.3 of the unit direct path at its start."""
    rt60 = rng.uniform(0.2, 0.7)
    t = np.arange(int(rt60 * sample_rate)) / sample_rate
    rir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60) * rng.uniform(0.1, 0.3)
    rir[0] = 1.0  # direct path
    return rir


def convolve_rir(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """x [n] through the room `rir` [L] -> float64 [n] (the tail past n is cut), scaled back
    to the std of x so that a later SNR refers to the same level."""
    nfft = 1 << (len(x) + len(rir) - 2).bit_length()  # linear (not circular) convolution
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(rir, nfft), nfft)[: len(x)]
    return y * (np.std(x) / (np.std(y) + 1e-12))


def reverberate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x [n] in a synthetic room (`synthetic_rir`) -> float64 [n]."""
    return convolve_rir(x, synthetic_rir(rng))


class AudioFolder:
    """Every readable *.wav under `root` (searched recursively: MUSAN's and the common RIR
    sets' layouts), read on demand and resampled to `sample_rate`, mono (first channel).

    `key` is the config key that named the folder: a missing folder or one without a
    readable wav is a DataError naming both."""

    def __init__(self, root: str, key: str, sample_rate: int = SAMPLE_RATE):
        self.root, self.sample_rate = pathlib.Path(root), sample_rate
        if not self.root.is_dir():
            raise DataError(f"{key}={root}: no such folder")
        self.files, self.rates, self.frames = [], [], []
        for path in sorted(self.root.rglob("*")):
            if path.suffix.lower() != ".wav" or not path.is_file():
                continue
            try:
                info = sf.info(str(path))
            except RuntimeError:  # soundfile's errors: not a readable sound file
                continue
            if info.frames > 0:
                self.files.append(path)
                self.rates.append(info.samplerate)
                self.frames.append(info.frames)
        if not self.files:
            raise DataError(f"{key}={root}: no readable .wav file under this folder")

    def _read(self, k: int, start: int, frames: int) -> np.ndarray:
        """float64 samples [start, start + frames) of file k (native rate), first channel."""
        x, _ = sf.read(str(self.files[k]), frames=frames, start=start, always_2d=True)
        return x[:, 0].astype(np.float64)

    def _resampled(self, x: np.ndarray, k: int) -> np.ndarray:
        if self.rates[k] == self.sample_rate:
            return x
        return soxr.resample(x, self.rates[k], self.sample_rate).astype(np.float64)

    def window(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """float64 [n] unit-std window of a random file from a random start (looped when the
        file is shorter), or unit-std white noise if that window is silent."""
        k = int(rng.integers(len(self.files)))
        need = int(np.ceil(n * self.rates[k] / self.sample_rate)) + 1
        start = int(rng.integers(max(1, self.frames[k] - need + 1)))
        x = np.resize(self._resampled(self._read(k, start, need), k), n)
        std = np.std(x)
        return x / std if std > 0 else coloured_noise(n, 0.0, rng)

    def impulse_response(self, rng: np.random.Generator) -> np.ndarray:
        """float64 [L] a random file whole, from its strongest sample (the direct path), so
        that reverberated speech keeps its timing."""
        k = int(rng.integers(len(self.files)))
        rir = self._resampled(self._read(k, 0, self.frames[k]), k)
        return rir[int(np.argmax(np.abs(rir))) :]


@functools.lru_cache(maxsize=8)
def audio_folder(root: str, key: str) -> AudioFolder:
    """`AudioFolder(root, key)`, listed once per process (decoding threads share it)."""
    return AudioFolder(root, key)
