"""A small synthetic manifest corpus for the pipeline tests, and ways to break it.

Utterance `u` of a split holds int16 samples `(u + 1) * 64 + (k % 64)` (k = sample index), so
a test can tell from any decoded row which utterance it came from (`utterance_of`) and where
a crop started (`crop_phase`). FLAC is lossless, so these values survive the round trip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

PHONES = ["a", "b", "c", "d", "|"]
SR = 16000


def signal(u: int, n: int) -> np.ndarray:
    return ((u + 1) * 64 + np.arange(n) % 64).astype(np.int16)


def utterance_of(row: np.ndarray) -> int:
    return int(round(row[0] * 32768)) // 64 - 1


def crop_phase(row: np.ndarray) -> int:
    return int(round(row[0] * 32768)) % 64


def write_split(root: Path, split: str, lengths, seed: int = 0, wav_dir: str = "wav") -> None:
    rng = np.random.default_rng(seed)
    (root / wav_dir / split).mkdir(parents=True, exist_ok=True)
    rows, phn, wrd = [], [], []
    for u, n in enumerate(lengths):
        rel = f"{wav_dir}/{split}/{u:04d}.flac"
        sf.write(root / rel, signal(u, int(n)), SR, subtype="PCM_16")
        rows.append(f"{rel}\t{int(n)}")
        words = [" ".join(rng.choice(PHONES[:-1], rng.integers(1, 4))) for _ in range(2)]
        phn.append(" | ".join(words) + " |")
        wrd.append(" ".join(f"w{rng.integers(0, 50)}" for _ in range(2)))
    (root / f"{split}.tsv").write_text(".\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (root / f"{split}.phn").write_text("\n".join(phn) + "\n", encoding="utf-8")
    (root / f"{split}.wrd").write_text("\n".join(wrd) + "\n", encoding="utf-8")


def write_corpus(
    root: Path,
    n_train: int = 48,
    n_valid: int = 13,
    seed: int = 0,
    min_len: int = 1000,
    max_len: int = 12000,
) -> Path:
    """Writes train/valid splits with lengths uniform in [min_len, max_len] + dict.phn.txt."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    write_split(root, "train", rng.integers(min_len, max_len + 1, n_train), seed)
    write_split(root, "valid", rng.integers(min_len, max_len + 1, n_valid), seed + 1)
    (root / "dict.phn.txt").write_text("".join(f"{p} 10\n" for p in PHONES), encoding="utf-8")
    return root


# ----------------------------------------------------------------------------- breakage


def audio_path(root: Path, split: str, u: int) -> Path:
    return Path(root) / "wav" / split / f"{u:04d}.flac"


def edit_line(path: Path, lineno: int, new: bytes | None) -> None:
    """Replaces (or deletes, `new=None`) 1-based line `lineno` of a text file."""
    lines = Path(path).read_bytes().split(b"\n")
    if new is None:
        del lines[lineno - 1]
    else:
        lines[lineno - 1] = new
    Path(path).write_bytes(b"\n".join(lines))


def manifest_length(root: Path, split: str, u: int) -> int:
    line = (Path(root) / f"{split}.tsv").read_text().split("\n")[u + 1]
    return int(line.split("\t")[1])


def rewrite_audio(root: Path, split: str, u: int, data: np.ndarray, sr: int = SR) -> None:
    sf.write(audio_path(root, split, u), data, sr, subtype="PCM_16")


def truncate_audio(root: Path, split: str, u: int, keep_bytes: int = 200) -> None:
    p = audio_path(root, split, u)
    p.write_bytes(p.read_bytes()[:keep_bytes])
