"""Waveform augmentation of training utterances: speed perturbation, a random equaliser,
room reverberation and additive noise.

Why: a held-out voice differs from the training voices in pitch, in where its formants sit
(vocal tract length) and in the spectral tilt of its source. Resampling by a factor s moves
pitch and formants by s (and the duration by 1/s); a random smooth equaliser (a tilt in
dB per octave plus bumps at a few log-spaced frequencies) changes the tilt and the formant
balance. Both run on one real FFT of the utterance: the resampling is band-limited (the
spectrum is cut or zero-extended), so speeding up does not alias.

Then, for real recordings (each with its own probability): the utterance is played in a room
(a synthetic impulse response, or one of a folder of measured ones) and noise is added at an
SNR drawn from a range (coloured noise, babble of other training utterances, or a window of a
folder of noise recordings such as MUSAN's); data/degrade.py has the models, shared with the
corpus generator's noisy copies. The SNR is against the power of the whole utterance as the
generator's `--noise-snr` defines it, so a test set made with `--noise-snr 10` is in range.

Everything is a function of the generator passed in; the pipeline seeds it from
(seed, epoch, utterance index), so a resumed run sees the batches an uninterrupted one saw.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from unispeech_jax.data import degrade

# Bump centres of the equaliser, Hz: log-spaced over the band speech formants occupy.
EQ_CENTRES_HZ = (150.0, 300.0, 600.0, 1200.0, 2400.0, 4800.0)
_TILT_PIVOT_HZ = 1000.0


@dataclasses.dataclass(frozen=True)
class Augment:
    """speed: factor drawn from U[1-speed, 1+speed]; tilt_db: slope drawn from
    U[-tilt_db, tilt_db] dB/octave around 1 kHz; bumps_db: gain at each of EQ_CENTRES_HZ drawn
    from U[-bumps_db, bumps_db] dB, linear in log-frequency between them. 0 turns a part off.

    reverb_prob: probability of a room (a synthetic one, or with `rir_dir` one of its *.wav
    files or a synthetic one, even odds); noise_prob: probability of added noise at an SNR
    drawn from U[noise_snr] dB: with `noise_dir`, a window of one of its *.wav files or (even
    odds) otherwise one of white, pink, brown or babble (of `babble`, other training
    utterances; brown without them). `babble` is filled in by the pipeline, not the config."""

    speed: float = 0.0
    tilt_db: float = 0.0
    bumps_db: float = 0.0
    reverb_prob: float = 0.0
    rir_dir: str = ""
    noise_prob: float = 0.0
    noise_snr: tuple = (5.0, 20.0)
    noise_dir: str = ""
    babble: tuple = dataclasses.field(default=(), compare=False, repr=False)

    def __post_init__(self):
        if not 0.0 <= self.speed < 0.5:
            raise ValueError(f"data.augment_speed must be in [0, 0.5), got {self.speed}")
        if self.tilt_db < 0 or self.bumps_db < 0:
            raise ValueError("data.augment_tilt_db and data.augment_bumps_db must be >= 0")
        for key, p in (("reverb_prob", self.reverb_prob), ("noise_prob", self.noise_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"data.augment_{key}={p}: expected a probability in [0, 1]")
        snr = self.noise_snr
        if not (len(snr) == 2 and all(isinstance(v, (int, float)) for v in snr)) or (
            snr[0] > snr[1]
        ):
            raise ValueError(
                f"data.augment_noise_snr={snr!r}: expected (low, high) in dB with low <= high"
            )

    @property
    def active(self) -> bool:
        return self.equalises or self.reverb_prob > 0 or self.noise_prob > 0

    @property
    def equalises(self) -> bool:
        """Whether the speed / equaliser part (one FFT of the utterance) runs."""
        return self.speed > 0 or self.tilt_db > 0 or self.bumps_db > 0

    def folders(self) -> tuple[degrade.AudioFolder | None, degrade.AudioFolder | None]:
        """(RIR folder, noise folder), None where not configured; a DataError naming the key
        if one is missing or holds no readable wav."""
        rirs = self.rir_dir and degrade.audio_folder(self.rir_dir, "data.augment_rir_dir")
        noises = self.noise_dir and degrade.audio_folder(self.noise_dir, "data.augment_noise_dir")
        return rirs or None, noises or None


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
    `max_len` (a cap lowers the slow-down, so the utterance fits its batch row whole).
    Draws in a fixed order (speed, equaliser, room, noise), each only when its part is on, so
    switching a later part on leaves the earlier parts' draws as they were."""
    y = _resample_and_equalise(x, aug, rng, sample_rate, max_len) if aug.equalises else x
    rirs, noises = aug.folders()
    if aug.reverb_prob > 0 and rng.uniform() < aug.reverb_prob:
        use_folder = rirs is not None and rng.uniform() < 0.5
        rir = rirs.impulse_response(rng) if use_folder else degrade.synthetic_rir(rng, sample_rate)
        y = degrade.convolve_rir(y, rir)
    if aug.noise_prob > 0 and rng.uniform() < aug.noise_prob:
        snr = rng.uniform(*aug.noise_snr)
        if noises is not None and rng.uniform() < 0.5:
            noise = noises.window(len(y), rng)
        else:
            noise = degrade.make_noise(len(y), list(aug.babble), rng)
        # Unit power, not just unit std: brown noise keeps some offset, and the SNR is exact.
        noise = noise / np.sqrt(np.mean(noise**2))
        y = y + degrade.noise_at_snr(noise, np.mean(np.square(y, dtype=np.float64)), snr)
    return np.asarray(y, np.float32)


def _resample_and_equalise(
    x: np.ndarray, aug: Augment, rng: np.random.Generator, sample_rate: int, max_len: int
) -> np.ndarray:
    """The speed and equaliser part of `augment`: x [n] -> float32 [m]."""
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
