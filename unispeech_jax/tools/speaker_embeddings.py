"""Exports a speaker identification model's utterance embeddings as x-vector files that TTS
reads (`data.speaker_embeddings`, data/task_split.py).

    python -m unispeech_jax.tools.speaker_embeddings --workdir runs/st5_sid --out runs/xvec \\
        [--corpus DIR] [--splits train,valid,test] [--step N] [--batch-size 8]

writes `OUT/<split>.xvector.npy`, float32 [manifest rows, E] in manifest row order, E =
the sid model's model.speaker_embedding_dim: the `sid_embed` projection of the mean encoder
frame (models/speecht5/tasks/sid.py). A row whose audio cannot be read gets NaNs (a TTS run
skips it, counted as `bad_xvector`). DIR: a manifest folder (default: the sid run's own
data). Train TTS on them with `--config.data.speaker_embeddings=OUT` and the same
model.speaker_embedding_dim, on the same corpus. Bad input: one line, exit status 2.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import errors, inference, platforms
from unispeech_jax.data import audio as audio_lib
from unispeech_jax.data import sources
from unispeech_jax.data.manifest import manifest_root, read_lines
from unispeech_jax.data.stats import DataError

# Rows read and embedded together (bounds the audio held in memory).
CHUNK_ROWS = 256


def manifest_rows(manifest: Path) -> list[tuple[str, int]]:
    """(audio path, samples) of every row of a manifest (the root line's folder joined)."""
    if not manifest.is_file():
        raise DataError(f"manifest not found: {manifest}")
    raw = read_lines(manifest)
    root = manifest_root(manifest, raw)
    rows = []
    for n, line in enumerate(raw[1:], start=2):
        path, _, samples = line.decode("utf-8", "replace").partition("\t")
        if not samples.strip().isdigit():
            raise DataError(f"{manifest}:{n}: expected '<path><TAB><samples>'")
        rows.append((str(root / path), int(samples)))
    return rows


def split_embeddings(trained, manifest: Path, batch_size: int) -> tuple[np.ndarray, int]:
    """(float32 [rows, E] embeddings of a manifest's rows, NaN where the audio does not read;
    how many did not)."""
    rows = manifest_rows(manifest)
    out = np.full((len(rows), trained.module.args.speaker_embedding_dim), np.nan, np.float32)
    unread = 0
    for start in range(0, len(rows), CHUNK_ROWS):
        chosen, waves = [], []
        for r in range(start, min(start + CHUNK_ROWS, len(rows))):
            x, reason, _ = audio_lib.read_audio(*rows[r])
            if reason:
                unread += 1
                continue
            chosen.append(r)
            waves.append(x)
        if waves:
            out[chosen] = inference.embed_speakers(trained, waves, batch_size)[0]
    return out, unread


def export(workdir, out, corpus=None, splits=("train", "valid", "test"), step=None, batch_size=8):
    """Writes OUT/<split>.xvector.npy for each split; returns {split: rows}."""
    trained = inference.load(workdir, step, task="sid")
    data_dir = Path(corpus) if corpus else sources.resolve_data_dir(trained.config.data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split in splits:
        vectors, unread = split_embeddings(trained, data_dir / f"{split}.tsv", batch_size)
        np.save(out / f"{split}.xvector.npy", vectors)
        written[split] = len(vectors)
        logging.info(
            "%s: %d rows (%d unreadable: NaN)", out / f"{split}.xvector.npy", len(vectors), unread
        )
    return written


def main(argv: Sequence[str] | None = None) -> dict:
    platforms.skip_absent_accelerators()
    parser = errors.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="a SpeechT5 sid fine-tuning workdir")
    parser.add_argument("--out", required=True, help="folder for <split>.xvector.npy")
    parser.add_argument("--corpus", help="manifest folder (default: the run's data)")
    parser.add_argument("--splits", default="train,valid,test")
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return export(
            args.workdir,
            args.out,
            args.corpus,
            [s.strip() for s in args.splits.split(",") if s.strip()],
            args.step,
            args.batch_size,
        )
    except (config_lib.ConfigError, checkpoint_lib.CheckpointError, DataError) as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(2)


if __name__ == "__main__":
    main()
