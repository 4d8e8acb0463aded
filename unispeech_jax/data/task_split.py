"""The examples of a fine-tuning task's split: manifest rows with what the task reads beside
the audio (docs/ARCHITECTURE.md, "Task batches").

Per-row files next to <split>.tsv, one line per manifest row: `.wrd` transcript (asr, tts;
vc pairs rows by it), `.tgt` translation (st), `.spk` speaker name (tts, vc, se, sid),
`.clean` clean counterpart path, relative to the manifest root like the rows (se). With
`data.speaker_embeddings=DIR`, DIR/<split>.xvector.npy holds one float32 x-vector per
manifest row (tts, vc, se): `np.save(DIR / "train.xvector.npy", vectors)`, vectors [rows, E]
in manifest row order, E = `model.speaker_embedding_dim`.

Voice conversion pairs are derived here, not listed in a file: every two rows with the same
`.wrd` line and different `.spk` names give the example (source row -> target row), in both
directions (`--parallel K` corpora have K renderings of every sentence).

`data.heldout_fraction` = f > 0 holds out the training rows whose key hashes below f (the
`.wrd` line when the split has one, so every rendering of a sentence falls on the same side;
else the audio path): the split `<train_split>:heldout` is those rows, `<train_split>` the rest
— utterances of training speakers to evaluate on (sid accuracy; the corpus's valid and test
splits use unseen voices).

Problems are counted skips (or DataErrors with `data.strict`), as in data/manifest.py: a line
count that differs from the manifest skips every row; an empty transcript or speaker, a
missing clean file or a non-finite x-vector skips its row. A missing per-row file, an x-vector
file that is not a 2-D float array or whose width is not the model's, are DataErrors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from unispeech_jax.data import tasks
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.data_config import DataConfig
from unispeech_jax.data.manifest import (
    aligned_lines,
    load_split,
    manifest_root,
    read_lines,
    skip_every_row,
    speaker_names,
    transcript,
)
from unispeech_jax.data.stats import DataError, PipelineStats

HELDOUT = ":heldout"  # `<train_split>:heldout`: the held-out training rows


@dataclasses.dataclass
class TaskSplit:
    """The usable examples of one split for one task (n of them; vc: ordered pairs of rows)."""

    task: str
    manifest: Path
    where: list[str]  # '<manifest>:<line>: <audio path>' of each example, for problem reports
    audio_paths: list[str]  # the row's audio: `audio` (speech-input tasks), tts's mel source
    audio_lengths: np.ndarray  # int64 [n] samples
    mel_paths: list[str]  # audio of the `mel` target: tts the row, vc the partner, se clean
    mel_lengths: np.ndarray  # int64 [n] samples (se: the noisy row's; the clean must match)
    tokens: list[np.ndarray]  # int32 SentencePiece ids + </s> of `text` (text tasks)
    texts: list[str]  # the transcript / translation line, the reference of metrics ('' if none)
    speaker: np.ndarray  # int32 [n] training-speaker index of the (target) speaker, -1 if none
    speaker_names: list[str]  # the (target) speaker's .spk name ('' if the task reads none)
    xvectors: np.ndarray | None  # float32 [n, E] of the (target) speaker's utterance

    def __len__(self) -> int:
        return len(self.where)

    def speech_lengths(self) -> np.ndarray:
        """int64 [n] samples of the longer speech side the task reads."""
        lengths = np.zeros(len(self), np.int64)
        if self.task in tasks.SPEECH_INPUT:
            lengths = np.maximum(lengths, self.audio_lengths)
        if self.task in tasks.MEL:
            lengths = np.maximum(lengths, self.mel_lengths)
        return lengths


def heldout_draw(key: str) -> float:
    """U[0, 1) from a hash of `key` (a transcript or path): the held-out test of a row."""
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "little") * 2.0**-64


def load_task_split(
    data_dir: str | os.PathLike,
    split: str,
    cfg: DataConfig,
    task: tasks.TaskSpec,
    sp,
    *,
    train: bool,
    stats: PipelineStats,
) -> TaskSplit:
    """The examples of `split` (a manifest split, or `<train_split>:heldout`) for `task`.

    `sp`: the SentencePiece processor of the task's text (None for tasks without text).
    `train` filters examples outside the configured lengths (`too_short`, `too_long` on
    either side: samples, or tokens past the last `text_bucket_boundaries` entry); evaluation
    keeps every usable row.
    """
    data_dir = Path(data_dir)
    base, heldout = _base_split(split, cfg)
    rows = load_split(
        data_dir,
        base,
        cfg,
        vocabulary=None,
        with_labels=False,
        crop=False,
        filter_short=train,
        stats=stats,
    )
    manifest = data_dir / f"{base}.tsv"
    raw = read_lines(manifest)
    n_rows, root = len(raw) - 1, manifest_root(manifest, raw)

    def per_row(ext: str, needed: bool) -> list[bytes] | None:
        """The lines of <split>.<ext> (None if not needed and absent; [] if misaligned)."""
        path = data_dir / f"{base}.{ext}"
        return aligned_lines(path, n_rows, stats) if needed or path.is_file() else None

    def line_of(ext: str, lines: list[bytes], j: int) -> str | None:
        """Row j's text (None, counted, if empty or not UTF-8)."""
        return transcript(lines[j], f"{data_dir / f'{base}.{ext}'}:{j + 1}", stats)

    t = task.name
    text_ext = tasks.TEXT_FILE.get(t)
    lines = per_row(text_ext, True) if text_ext else None
    # The transcript: vc pairs rows by it; elsewhere a reference and the held-out key.
    words = per_row("wrd", t == "vc") if text_ext != "wrd" else None
    spk = per_row("spk", True) if t in tasks.SPEAKER else None
    clean = per_row("clean", True) if t == "se" else None
    xvectors = _xvectors(cfg, base, n_rows, task, stats)
    misaligned = any(f == [] for f in (lines, words, spk, clean))
    if misaligned or (xvectors is not None and not len(xvectors)):
        keep = range(0)  # every row is counted as skipped already
    else:
        keep = range(len(rows))
    ids = {name: i for i, name in enumerate(speaker_names(data_dir, cfg))} if spk else {}
    rows_out: list[dict] = []
    for r in keep:
        j = int(rows.lines[r]) - 2
        row = {"r": r, "text": "", "words": "", "speaker": "", "mel_path": ""}
        row["tokens"] = np.zeros(0, np.int32)
        if lines is not None:
            line = line_of(text_ext, lines, j)
            if line is None:
                continue
            row["text"] = line.strip()
            row["tokens"] = np.asarray(text_lib.sp_encode(sp, row["text"], add_eos=True), np.int32)
            if train and len(row["tokens"]) > cfg.text_bucket_boundaries[-1]:
                where = f"{data_dir / f'{base}.{text_ext}'}:{j + 1}"
                stats.problem("too_long", where, f"{len(row['tokens'])} tokens", filtered=True)
                continue
            row["words"] = row["text"] if text_ext == "wrd" else ""
        if words is not None:
            line = line_of("wrd", words, j) if t == "vc" else words[j].decode("utf-8", "replace")
            if line is None:
                continue
            row["words"] = line.strip()
            row["text"] = row["text"] or row["words"]
        if spk is not None:
            row["speaker"] = spk[j].decode("utf-8", "replace").strip()
            if not row["speaker"]:
                stats.problem("empty_speaker", f"{data_dir / f'{base}.spk'}:{j + 1}")
                continue
        if t in ("tts", "vc"):
            row["mel_path"] = rows.paths[r]
        if clean is not None:
            rel = clean[j].decode("utf-8", "replace").strip()
            row["mel_path"] = str(root / rel)
            if not rel or not Path(row["mel_path"]).is_file():
                where = f"{data_dir / f'{base}.clean'}:{j + 1}"
                stats.problem("missing_audio", where, row["mel_path"])
                continue
        if xvectors is not None:
            row["xvector"] = np.asarray(xvectors[j], np.float32)
            if not np.isfinite(row["xvector"]).all():
                where = f"{Path(cfg.speaker_embeddings) / f'{base}.xvector.npy'}: row {j}"
                stats.problem("bad_xvector", where, "non-finite values")
                continue
        key = row["words"] or os.path.relpath(rows.paths[r], root)
        if cfg.heldout_fraction > 0 and (heldout_draw(key) < cfg.heldout_fraction) != heldout:
            continue
        rows_out.append(row)
    examples = _pairs(rows_out) if t == "vc" else [(row, row) for row in rows_out]
    if t == "vc" and rows_out and not examples:
        raise DataError(
            f"{manifest}: no two rows share a .wrd line with different speakers, so there are "
            "no voice conversion pairs (make the corpus with data.corpus.parallel >= 2)"
        )
    return _task_split(t, manifest, rows, examples, ids, xvectors is not None)


def _base_split(split: str, cfg: DataConfig) -> tuple[str, bool]:
    """(manifest split, whether it is the held-out part) of a split name."""
    if split == cfg.train_split + HELDOUT:
        if cfg.heldout_fraction <= 0:
            raise DataError(
                f"split {split!r}: data.heldout_fraction is 0, so no training rows are held out"
            )
        return cfg.train_split, True
    return split, False


def _pairs(rows: list[dict]) -> list[tuple[dict, dict]]:
    """(source, target) rows of every ordered pair with one .wrd line and two speakers."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["words"]].append(row)
    return [
        (a, b)
        for group in groups.values()
        for a in group
        for b in group
        if a["speaker"] != b["speaker"]
    ]


def _task_split(task, manifest, rows, examples, ids, with_xvectors) -> TaskSplit:
    """A TaskSplit of (source row, target row) examples of the Split `rows`."""
    paths, lengths = rows.paths, rows.lengths

    def where(a, b):
        w = rows.where(a["r"])
        return w if b["mel_path"] in ("", paths[a["r"]]) else f"{w} -> {b['mel_path']}"

    # The target of vc is the partner row; se's clean copy has the noisy row's length.
    mel_rows = [b["r"] for _, b in examples]
    return TaskSplit(
        task=task,
        manifest=manifest,
        where=[where(a, b) for a, b in examples],
        audio_paths=[paths[a["r"]] for a, _ in examples],
        audio_lengths=np.asarray([lengths[a["r"]] for a, _ in examples], np.int64),
        mel_paths=[b["mel_path"] for _, b in examples],
        mel_lengths=np.asarray([lengths[r] for r in mel_rows], np.int64),
        tokens=[a["tokens"] for a, _ in examples],
        texts=[a["text"] for a, _ in examples],
        speaker=np.asarray([ids.get(b["speaker"], -1) for _, b in examples], np.int32),
        speaker_names=[b["speaker"] for _, b in examples],
        xvectors=np.stack([b["xvector"] for _, b in examples]).astype(np.float32)
        if with_xvectors and examples
        else None,
    )


def _xvectors(
    cfg: DataConfig,
    split: str,
    n_rows: int,
    task: tasks.TaskSpec,
    stats: PipelineStats,
) -> np.ndarray | None:
    """The x-vectors of `split` ([n_rows, E], memory-mapped) with `data.speaker_embeddings`,
    else None; an empty array when the row count is wrong (every row counted as skipped)."""
    if not cfg.speaker_embeddings or task.name not in tasks.MEL:
        return None
    path = Path(cfg.speaker_embeddings) / f"{split}.xvector.npy"
    if not path.is_file():
        raise DataError(
            f"x-vector file not found: {path} (data.speaker_embeddings needs "
            f"<split>.xvector.npy, float32 [manifest rows, E], for every split used)"
        )
    try:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a .npy array ({e})") from None
    if vectors.ndim != 2 or vectors.dtype.kind != "f":
        raise DataError(
            f"{path}: expected a 2-D float array [rows, E], got {vectors.dtype} {vectors.shape}"
        )
    width = task.speaker_embedding_dim
    if width and vectors.shape[1] != width:
        raise DataError(
            f"{path}: x-vectors of width {vectors.shape[1]}, but model.speaker_embedding_dim "
            f"is {width}"
        )
    if len(vectors) != n_rows:
        skip_every_row(stats, path, n_rows, f"{len(vectors)} x-vectors")
        return vectors[:0]
    return vectors
