"""Waveform augmentation of training utterances: speed perturbation and a random equaliser.

Why: a held-out voice differs from the training voices in pitch, in where its formants sit
(vocal tract length) and in the spectral tilt of its source. Resampling by a factor s moves
pitch and formants by s (and the duration by 1/s); a random smooth equaliser (a tilt in
dB per octave plus bumps at a few log-spaced frequencies) changes the tilt and the formant
balance. Both run on one real FFT of the utterance: the resampling is band-limited (the
spectrum is cut or zero-extended), so speeding up does not alias.

Everything is a function of the generator passed in; the pipeline seeds it from
(seed, epoch, utterance index), so a resumed run sees the batches an uninterrupted one saw.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Bump centres of the equaliser, Hz: log-spaced over the band speech formants occupy.
EQ_CENTRES_HZ = (150.0, 300.0, 600.0, 1200.0, 2400.0, 4800.0)
_TILT_PIVOT_HZ = 1000.0


@dataclasses.dataclass(frozen=True)
class Augment:
    """speed: factor drawn from U[1-speed, 1+speed]; tilt_db: slope drawn from
    U[-tilt_db, tilt_db] dB/octave around 1 kHz; bumps_db: gain at each of EQ_CENTRES_HZ drawn
    from U[-bumps_db, bumps_db] dB, linear in log-frequency between them. 0 turns a part off."""

    speed: float = 0.0
    tilt_db: float = 0.0
    bumps_db: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.speed < 0.5:
            raise ValueError(f"data.augment_speed must be in [0, 0.5), got {self.speed}")
        if self.tilt_db < 0 or self.bumps_db < 0:
            raise ValueError("data.augment_tilt_db and data.augment_bumps_db must be >= 0")

    @property
    def active(self) -> bool:
        return self.speed > 0 or self.tilt_db > 0 or self.bumps_db > 0


def eq_gain_db(freqs_hz: np.ndarray, tilt: float, bumps: np.ndarray) -> np.ndarray:
    """Equaliser gain in dB at `freqs_hz` [F]: `tilt` dB/octave about 1 kHz plus `bumps`
    [len(EQ_CENTRES_HZ)] interpolated in log-frequency (flat beyond the outer centres)."""
    octaves = np.log2(np.maximum(freqs_hz, EQ_CENTRES_HZ[0]) / _TILT_PIVOT_HZ)
    centres = np.log2(np.asarray(EQ_CENTRES_HZ) / _TILT_PIVOT_HZ)
    return tilt * octaves + np.interp(octaves, centres, bumps)


def augment(
    x: np.ndarray, aug: Augment, rng: np.random.Generator, sample_rate: int, max_len: int
) -> np.ndarray:
    """x [n] float32 -> augmented waveform [m] float32, m = round(n / speed factor) capped at
    `max_len` (a cap lowers the slow-down, so the utterance fits its batch row whole)."""
    n = len(x)
    factor = 1.0 + rng.uniform(-aug.speed, aug.speed) if aug.speed > 0 else 1.0
    m = min(max(1, round(n / factor)), max_len)
    tilt = rng.uniform(-aug.tilt_db, aug.tilt_db) if aug.tilt_db > 0 else 0.0
    bumps = (
        rng.uniform(-aug.bumps_db, aug.bumps_db, len(EQ_CENTRES_HZ))
        if aug.bumps_db > 0
        else np.zeros(len(EQ_CENTRES_HZ))
    )
    spectrum = np.fft.rfft(x.astype(np.float64))
    keep = min(len(spectrum), m // 2 + 1)
    out = np.zeros(m // 2 + 1, np.complex128)
    out[:keep] = spectrum[:keep] * (m / n)
    if tilt or bumps.any():
        # The played-back frequency of output bin k is k * sample_rate / m.
        freqs = np.arange(m // 2 + 1) * (sample_rate / m)
        out *= 10.0 ** (eq_gain_db(freqs, tilt, bumps) / 20.0)
    return np.fft.irfft(out, m).astype(np.float32)
