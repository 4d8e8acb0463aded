"""Reading one utterance's audio, checked against its manifest row: the one place that opens
an audio file for training, evaluation and k-means labelling.

A problem is returned as a skip reason of data/stats.py (`SKIP_REASONS`) and a detail, never
raised: the input pipeline counts it (or raises a DataError in strict mode), the k-means tool
raises it, since a label file must never be misaligned with its manifest.
"""

from __future__ import annotations

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000  # of the corpus, the features and the models


def read_audio(
    path: str,
    expected_len: int,
    offset: int = 0,
    take: int | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray | None, str | None, str]:
    """Samples [offset, offset + take) of a mono file of `expected_len` samples at
    `sample_rate` (`take` None: to the end) -> (float32 [take] or None, skip reason or None,
    detail)."""
    take = expected_len - offset if take is None else take
    try:
        with sf.SoundFile(path) as f:
            reason, detail = _header_problem(f, expected_len, sample_rate)
            if reason is not None:
                return None, reason, detail
            if offset:
                f.seek(offset)
            x = f.read(take, dtype="float32", always_2d=False)
    except Exception as e:  # soundfile raises several types; all mean "cannot decode"
        return None, "unreadable", f"{type(e).__name__}: {e}"
    if len(x) < take:
        return None, "truncated", f"{len(x)} of {take} samples readable"
    if not np.isfinite(x).all():
        return None, "non_finite", ""
    return x, None, ""


def header_problem(
    path: str, expected_len: int, sample_rate: int = SAMPLE_RATE
) -> tuple[str | None, str]:
    """What `read_audio` would find wrong in the file's header alone (skip reason or None,
    detail): reads no samples, for rows that are never decoded (filtered by their length)."""
    try:
        with sf.SoundFile(path) as f:
            return _header_problem(f, expected_len, sample_rate)
    except Exception as e:  # as in read_audio
        return "unreadable", f"{type(e).__name__}: {e}"


def _header_problem(f: sf.SoundFile, expected_len: int, sample_rate: int):
    if f.samplerate != sample_rate:
        return "wrong_sample_rate", f"{f.samplerate} Hz, expected {sample_rate}"
    if f.channels != 1:
        return "multi_channel", f"{f.channels} channels, expected 1"
    if f.frames == 0:
        return "empty_audio", ""
    if f.frames != expected_len:
        return "length_mismatch", f"{f.frames} samples, the manifest says {expected_len}"
    return None, ""


def normalize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance: float [S] -> float32 [S]."""
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-5)).astype(np.float32)
