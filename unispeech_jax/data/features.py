"""Spectral features of a waveform: SpeechT5 log-mel targets and MFCCs for k-means labels.

Two feature recipes, each a pure numpy function of one utterance (float [S] at 16 kHz):

- `log_mel`: the SpeechT5 speech-decoder target (SPEC §3). Magnitude STFT (n_fft 1024, hop
  256, periodic Hann, centred with reflect padding), 80 Slaney mel bins over 80-7600 Hz,
  `log10(max(1e-10, ·))`. Equal to
  `log10(max(1e-10, librosa.feature.melspectrogram(y, sr=16000, n_fft=1024, hop_length=256,
  pad_mode="reflect", power=1, n_mels=80, fmin=80, fmax=7600)))`, transposed to [F, 80].
  `log_mel_tf` is the same function as TensorFlow ops (for a tf.data map over single
  utterances); the manifest pipeline calls the numpy version inside its decoding function.
- `mfcc`: librosa.feature.mfcc (power mel spectrogram, `power_to_db` with top_db 80,
  orthonormal DCT-II) with a window of 400 samples, hop 320 and no centring: frame t covers
  samples [320 t, 320 t + 400), exactly the receptive field of conv frame t of the wav2vec 2.0
  feature encoder, so MFCC frames and model frames align one to one (`conv_frames`).
  `mfcc_deltas` appends first and second order regression deltas (HTK / HuBERT style).

Shapes: `S` samples, `F` log-mel frames (hop 256), `T` conv frames (hop 320).
"""

from __future__ import annotations

import functools

import numpy as np

from unispeech_jax.data.audio import SAMPLE_RATE

# SpeechT5 log-mel target.
MEL_N_FFT = 1024
MEL_HOP = 256
MEL_BINS = 80
MEL_FMIN = 80.0
MEL_FMAX = 7600.0
LOG_FLOOR = 1e-10

# The wav2vec 2.0 conv feature encoder (SPEC §1): kernels (10,3,3,3,3,2,2), strides
# (5,2,2,2,2,2,2) give a receptive field of 400 samples and a hop of 320 (20 ms).
CONV_WINDOW = 400
CONV_HOP = 320

# MFCC for k-means labels: one 25 ms window per conv frame.
MFCC_N_MFCC = 13
MFCC_N_MELS = 40
DELTA_WIDTH = 5


# ============================================================================ frame counts


def conv_frames(num_samples):
    """Frames of the conv feature encoder for `num_samples` (int or int array): 0 below 400."""
    n = np.asarray(num_samples, np.int64)
    out = np.where(n >= CONV_WINDOW, (n - CONV_WINDOW) // CONV_HOP + 1, 0)
    return int(out) if out.ndim == 0 else out


def mel_frames(num_samples):
    """Frames of the centred log-mel STFT for `num_samples` (int or int array)."""
    n = np.asarray(num_samples, np.int64)
    out = n // MEL_HOP + 1
    return int(out) if out.ndim == 0 else out


# ============================================================================ filterbanks


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    hz = np.asarray(hz, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    log = min_log_hz * np.exp(logstep * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log, f_sp * mel)


@functools.lru_cache(maxsize=8)
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """float64 [n_mels, n_fft//2 + 1] triangular filters, Slaney scale and area normalisation
    (librosa.filters.mel defaults). Cached and read-only: callers share it."""
    fft_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    offsets = edges[:, None] - fft_hz[None, :]  # [n_mels + 2, bins]
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Area normalisation: every filter has the same energy whatever its width.
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights.setflags(write=False)
    return weights


@functools.lru_cache(maxsize=8)
def _sparse_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`mel_filterbank` as (bins, weights, starts): filter i is weights[starts[i]:starts[i+1]]
    on bins[starts[i]:starts[i+1]]. An empty filter gets one zero weight (reduceat needs one)."""
    bins, weights, starts = [], [], []
    for row in mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax):
        nz = np.flatnonzero(row)
        nz = nz if len(nz) else np.zeros(1, np.int64)
        starts.append(len(bins))
        bins.extend(nz.tolist())
        weights.extend(row[nz].tolist())
    return np.asarray(bins), np.asarray(weights), np.asarray(starts)


def apply_filterbank(
    spec: np.ndarray,
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float,
    fmax: float,
) -> np.ndarray:
    """float [frames, n_fft//2 + 1] @ mel_filterbank(...).T -> float64 [frames, n_mels].

    Each bin feeds at most two triangles, so the filterbank is ~2 % non-zero: gathering those
    entries costs 1/20 of the dense product and needs no BLAS threads (which, measured on a
    busy 2-core host, made the dense product ten times slower than the FFT).
    """
    bins, weights, starts = _sparse_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    return np.add.reduceat(spec[:, bins] * weights, starts, axis=1)


@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (scipy's fftbins=True, what librosa and tf.signal use)."""
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    w.setflags(write=False)
    return w


@functools.lru_cache(maxsize=8)
def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """float64 [n_in, n_out] orthonormal DCT-II (scipy.fft.dct(norm='ortho')) as a matrix."""
    k = np.arange(n_out)[None, :]
    n = np.arange(n_in)[:, None]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[:, 0] /= np.sqrt(2.0)
    m.setflags(write=False)
    return m


# ============================================================================ numpy features


def power_spectrum(
    x: np.ndarray, n_fft: int, hop: int, *, center: bool, power: float
) -> np.ndarray:
    """|STFT|^power of float [S] with a periodic Hann window of n_fft -> float64 [frames, bins].

    center=True pads n_fft//2 on both sides by reflection (frames = S//hop + 1); center=False
    takes the windows inside the signal (frames = (S - n_fft)//hop + 1, 0 if S < n_fft).
    """
    x = np.asarray(x, np.float64).reshape(-1)
    if center:
        x = np.pad(x, n_fft // 2, mode="reflect")
    if len(x) < n_fft:
        return np.zeros((0, n_fft // 2 + 1))
    windows = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    magnitude = np.abs(np.fft.rfft(windows * _hann(n_fft), axis=-1))
    return magnitude if power == 1 else magnitude**power


def log_mel(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """SpeechT5 log-mel target of float [S] -> float32 [mel_frames(S), 80]."""
    spec = power_spectrum(x, MEL_N_FFT, MEL_HOP, center=True, power=1.0)
    mel = apply_filterbank(spec, sample_rate, MEL_N_FFT, MEL_BINS, MEL_FMIN, MEL_FMAX)
    return np.log10(np.maximum(LOG_FLOOR, mel)).astype(np.float32)


def mfcc(
    x: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    n_mfcc: int = MFCC_N_MFCC,
    n_mels: int = MFCC_N_MELS,
) -> np.ndarray:
    """MFCC of float [S] on the conv frame grid -> float32 [conv_frames(S), n_mfcc].

    Equal to librosa.feature.mfcc(y, sr, n_mfcc, n_fft=400, hop_length=320, center=False,
    n_mels=n_mels).T (power mel, power_to_db with amin 1e-10 and top_db 80, DCT-II ortho).
    """
    spec = power_spectrum(x, CONV_WINDOW, CONV_HOP, center=False, power=2.0)
    if not len(spec):
        return np.zeros((0, n_mfcc), np.float32)
    mel = apply_filterbank(spec, sample_rate, CONV_WINDOW, n_mels, 0.0, sample_rate / 2)
    db = 10.0 * np.log10(np.maximum(LOG_FLOOR, mel))
    # power_to_db's top_db: nothing more than 80 dB below the utterance's loudest bin.
    db = np.maximum(db, db.max() - 80.0)
    return (db @ _dct_matrix(n_mels, n_mfcc)).astype(np.float32)


def deltas(features: np.ndarray, width: int = DELTA_WIDTH) -> np.ndarray:
    """Regression deltas over time of float [T, D] -> float32 [T, D] (edges repeated).

    d_t = sum_k k (c_{t+k} - c_{t-k}) / (2 sum_k k^2), k = 1..width//2; equal to
    librosa.feature.delta(features, width=width, mode='nearest', axis=0).
    """
    half = width // 2
    c = np.asarray(features, np.float64)
    if not len(c):
        return c.astype(np.float32)
    padded = np.concatenate([np.repeat(c[:1], half, 0), c, np.repeat(c[-1:], half, 0)])
    t = len(c)
    num = sum(
        k * (padded[half + k : half + k + t] - padded[half - k : half - k + t])
        for k in range(1, half + 1)
    )
    return (num / (2.0 * sum(k * k for k in range(1, half + 1)))).astype(np.float32)


def mfcc_deltas(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MFCC + deltas + delta-deltas of float [S] -> float32 [conv_frames(S), 39]: the
    first-iteration k-means features."""
    c = mfcc(x, sample_rate)
    d = deltas(c)
    return np.concatenate([c, d, deltas(d)], axis=1)


# ============================================================================ TensorFlow


def log_mel_tf(x, sample_rate: int = SAMPLE_RATE):
    """`log_mel` as TensorFlow ops: float32 [S] tensor -> float32 [S//256 + 1, 80] tensor.

    For a tf.data `map` over single utterances (the reflect padding depends on each
    utterance's own length). Computed in float32, so it agrees with `log_mel` to ~1e-4.
    """
    import tensorflow as tf

    x = tf.reshape(tf.cast(x, tf.float32), [-1])
    x = tf.pad(x, [[MEL_N_FFT // 2, MEL_N_FFT // 2]], mode="REFLECT")
    spec = tf.abs(
        tf.signal.stft(
            x,
            MEL_N_FFT,
            MEL_HOP,
            MEL_N_FFT,
            window_fn=tf.signal.hann_window,
            pad_end=False,
        )
    )
    bank = mel_filterbank(sample_rate, MEL_N_FFT, MEL_BINS, MEL_FMIN, MEL_FMAX)
    mel = tf.matmul(spec, tf.constant(bank.T, tf.float32))
    return tf.math.log(tf.maximum(mel, LOG_FLOOR)) / np.log(10.0).astype(np.float32)
