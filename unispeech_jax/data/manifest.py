"""Manifest splits: <split>.tsv (+ .<labels>, .<km_labels>, .spk) -> the usable utterances.

A manifest's first line is the audio root (absolute, or relative to the manifest's folder);
then one `<relative path>\t<num_samples>` row per utterance. Label files have one line per
row. `load_split` parses them and applies the split-level checks of data/stats.py; the audio
itself is read later, batch by batch (data/decode.py).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from unispeech_jax.data import features
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.audio import header_problem
from unispeech_jax.data.data_config import resolve
from unispeech_jax.data.stats import DataError, PipelineStats


@dataclasses.dataclass
class Split:
    """The usable utterances of a manifest split (after split-level checks)."""

    manifest: Path
    paths: list[str]  # absolute audio paths
    lengths: np.ndarray  # int64 [n] num_samples from the manifest
    lines: np.ndarray  # int64 [n] 1-based line in the manifest
    labelled: np.ndarray  # bool  [n] transcript used for CTC
    label_ids: np.ndarray  # int32 [sum of label lengths] phone ids, concatenated
    label_offsets: np.ndarray  # int64 [n+1]
    km_ids: np.ndarray | None = None  # int32 [sum of frames] (data.km_labels), concatenated
    km_offsets: np.ndarray | None = None  # int64 [n+1]
    speaker: np.ndarray | None = None  # int32 [n] (data.speakers), -1 = not a train speaker
    # (first row, manifest) of each manifest appended after `manifest` (`appended`).
    parts: tuple = ()

    def __len__(self) -> int:
        return len(self.paths)

    def where(self, i: int) -> str:
        """'<manifest>:<line>: <audio path>' of row i, for problem reports."""
        manifest = self.manifest
        for first, other in self.parts:
            if i >= first:
                manifest = other
        return f"{manifest}:{self.lines[i]}: {self.paths[i]}"

    def appended(self, other: Split) -> Split:
        """This split's rows, then those of `other`, a freshly loaded split (no km labels or
        speakers on either: data_config excludes them with `unlabelled_manifests`)."""
        if (
            self.km_ids is not None
            or other.km_ids is not None
            or self.speaker is not None
            or other.speaker is not None
            or other.parts
        ):
            raise ValueError("only splits without km labels or speakers can be appended")
        n = len(self)
        return Split(
            self.manifest,
            self.paths + other.paths,
            np.concatenate([self.lengths, other.lengths]),
            np.concatenate([self.lines, other.lines]),
            np.concatenate([self.labelled, other.labelled]),
            np.concatenate([self.label_ids, other.label_ids]),
            np.concatenate([self.label_offsets, other.label_offsets[1:] + self.label_offsets[-1]]),
            parts=self.parts + ((n, other.manifest),),
        )

    def labels_of(self, i: int) -> np.ndarray:
        """int32 [phones of row i] label ids (empty for an unlabelled row)."""
        return self.label_ids[self.label_offsets[i] : self.label_offsets[i + 1]]

    def km_of(self, i: int) -> np.ndarray:
        """int32 [conv_frames(lengths[i])] frame labels of row i."""
        return self.km_ids[self.km_offsets[i] : self.km_offsets[i + 1]]


def read_lines(path: Path) -> list[bytes]:
    """The lines of a file as bytes, without their line ends (\n or \r\n)."""
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [s[:-1] if s.endswith(b"\r") else s for s in lines]


def transcript(raw: bytes, where: str, stats: PipelineStats) -> str | None:
    """A label line as text; None, after recording the problem, if it is not UTF-8 or empty."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        stats.problem("non_utf8_transcript", where)
        return None
    if not line.strip():
        stats.problem("empty_transcript", where)
        return None
    return line


def manifest_root(manifest: Path, raw: list[bytes] | None = None) -> Path:
    """The audio root named on the first line of `manifest` (its lines `raw`, if read
    already; see `_resolve_root`)."""
    raw = read_lines(manifest) if raw is None else raw
    if not raw:
        raise DataError(f"{manifest}:1: empty manifest (expected the root line)")
    try:
        return _resolve_root(raw[0].decode("utf-8").strip(), manifest)
    except UnicodeDecodeError:
        raise DataError(f"{manifest}:1: root line is not UTF-8") from None


def _resolve_root(root: str, manifest: Path) -> Path:
    """Manifest root: absolute, else relative to the manifest's folder (then to the cwd)."""
    r = Path(root)
    if r.is_absolute():
        return r
    beside = manifest.parent / r
    return beside if beside.is_dir() or not r.is_dir() else r.resolve()


def load_split(
    data_dir: str | os.PathLike,
    split: str,
    data_cfg,
    *,
    vocabulary: text_lib.PhoneVocab | None,
    with_labels: bool,
    labelled_fraction: float = 1.0,
    labelled_only: bool = False,
    seed: int = 0,
    crop: bool | None = None,
    filter_short: bool = True,
    stats: PipelineStats | None = None,
) -> Split:
    """Parses <data_dir>/<split>.tsv (+ .<labels>) and applies the split-level checks.

    `labelled_fraction` picks a subset of the rows that keep their transcript (by `seed`; the
    subsets for growing fractions are nested); `labelled_only` keeps only those rows. Problems
    go through `stats` (skip or raise).
    """
    cfg = resolve(data_cfg)
    stats = stats if stats is not None else PipelineStats(cfg.strict)
    crop = cfg.crop if crop is None else crop
    manifest = Path(data_dir) / f"{split}.tsv"
    if not manifest.is_file():
        raise DataError(f"manifest not found: {manifest}")
    raw = read_lines(manifest)
    root = manifest_root(manifest, raw)
    rows = raw[1:]
    n_rows = len(rows)

    labels: list[bytes] | None = None
    label_file = Path(data_dir) / f"{split}.{cfg.labels}"
    if with_labels and cfg.labels:
        if not label_file.is_file():
            raise DataError(
                f"label file not found: {label_file} (set data.labels='' for unlabelled data)"
            )
        labels = read_lines(label_file)
        if len(labels) != n_rows:
            skip_every_row(stats, label_file, n_rows, f"{len(labels)} lines")
            rows = []

    km_file = km_dir(cfg, data_dir) / f"{split}.{cfg.km_labels}"
    km_lines = aligned_lines(km_file, n_rows, stats) if cfg.km_labels else None
    spk_file = Path(data_dir) / f"{split}.spk"
    spk_lines = aligned_lines(spk_file, n_rows, stats) if cfg.speakers else None
    speaker_ids = (
        {name: i for i, name in enumerate(speaker_names(data_dir, cfg))} if cfg.speakers else {}
    )
    if (km_lines is not None and km_lines == []) or (spk_lines is not None and spk_lines == []):
        rows = []

    chosen = np.zeros(n_rows, bool)
    if labels is not None:
        order = np.random.default_rng([seed, 0x1AB]).permutation(n_rows)
        chosen[order[: int(round(labelled_fraction * n_rows))]] = True

    paths, lengths, lines, labelled, ids, offsets = [], [], [], [], [], [0]
    km_ids, km_offsets, speakers = [], [0], []
    for j, row in enumerate(rows):
        if labelled_only and not chosen[j]:
            continue
        where = f"{manifest}:{j + 2}"
        try:
            rel, n = row.decode("utf-8").split("\t")[:2]
            n = int(n)
            if n < 0 or not rel:
                raise ValueError
        except ValueError:  # also UnicodeDecodeError
            stats.problem("bad_manifest_line", where, repr(row[:80]))
            continue
        phone_ids: list[int] = []
        if labels is not None:
            lwhere = f"{label_file}:{j + 1}"
            line = transcript(labels[j], lwhere, stats)
            if line is None:
                continue
            try:
                phone_ids = vocabulary.encode(line)
            except text_lib.UnknownPhoneError as e:
                stats.problem("unknown_phone", lwhere, repr(e.phone))
                continue
        frame_ids = np.zeros(0, np.int32)
        if km_lines is not None:
            kwhere = f"{km_file}:{j + 1}"
            try:
                frame_ids = np.asarray(km_lines[j].split(), np.int64)
            except ValueError:
                stats.problem("bad_km_labels", kwhere, repr(km_lines[j][:80]))
                continue
            if (frame_ids < 0).any() or (frame_ids > np.iinfo(np.int32).max).any():
                stats.problem("bad_km_labels", kwhere, "negative or huge id")
                continue
            if len(frame_ids) != features.conv_frames(n):
                stats.problem(
                    "km_length_mismatch",
                    kwhere,
                    f"{len(frame_ids)} labels for {features.conv_frames(n)} frames of {n} samples",
                )
                continue
        speaker = -1
        if spk_lines is not None:
            name = spk_lines[j].decode("utf-8", "replace").strip()
            if not name:
                stats.problem("empty_speaker", f"{spk_file}:{j + 1}")
                continue
            speaker = speaker_ids.get(name, -1)
        path = root / rel
        if not path.is_file():
            stats.problem("missing_audio", where, str(path))
            continue
        if n == 0:
            stats.problem("empty_audio", where, str(path))
            continue
        filter_reason = None
        if filter_short and n < cfg.min_sample_len:
            filter_reason = "too_short"
        elif filter_short and not crop and n > cfg.max_sample_len:
            filter_reason = "too_long"
        if filter_reason:  # never decoded, so its header is checked here, against the claim
            reason, detail = header_problem(str(path), n, cfg.sample_rate)
            if reason is None:
                stats.problem(filter_reason, where, f"{n} samples", filtered=True)
            else:
                stats.problem(reason, where, f"{path}: {detail}" if detail else str(path))
            continue
        is_labelled = bool(chosen[j])
        if is_labelled and crop and n > cfg.max_sample_len:
            is_labelled = False
            stats.labelled_cropped += 1
        if is_labelled and len(phone_ids) > cfg.max_label_len:
            stats.problem(
                "label_too_long",
                f"{label_file}:{j + 1}",
                f"{len(phone_ids)} > {cfg.max_label_len}",
                filtered=True,
            )
            continue
        if not is_labelled:
            phone_ids = []
        paths.append(str(path))
        lengths.append(n)
        lines.append(j + 2)
        labelled.append(is_labelled)
        ids.extend(phone_ids)
        offsets.append(len(ids))
        km_ids.append(frame_ids.astype(np.int32))
        km_offsets.append(km_offsets[-1] + len(frame_ids))
        speakers.append(speaker)
    return Split(
        manifest,
        paths,
        np.asarray(lengths, np.int64),
        np.asarray(lines, np.int64),
        np.asarray(labelled, bool),
        np.asarray(ids, np.int32),
        np.asarray(offsets, np.int64),
        km_ids=np.concatenate([np.zeros(0, np.int32), *km_ids]) if km_lines is not None else None,
        km_offsets=np.asarray(km_offsets, np.int64) if km_lines is not None else None,
        speaker=np.asarray(speakers, np.int32) if spk_lines is not None else None,
    )


def km_dir(data_cfg, data_dir: str | os.PathLike) -> Path:
    """Folder of the frame label files: `data.km_dir` if set; else, with `data.km_clusters` = k,
    `clustered_labels_dir(data_dir, k)` (made on first use by data/sources.py); else the data
    dir itself."""
    cfg = resolve(data_cfg)
    if cfg.km_dir:
        return Path(cfg.km_dir)
    if cfg.km_clusters > 0:
        return clustered_labels_dir(data_dir, cfg.km_clusters)
    return Path(data_dir)


def clustered_labels_dir(data_dir: str | os.PathLike, k: int) -> Path:
    """<data dir>/km<k>: where the MFCC k-means labels of a corpus are cached (data/kmeans.py)."""
    return Path(data_dir) / f"km{k}"


def aligned_lines(path: Path, n_rows: int, stats: PipelineStats) -> list[bytes]:
    """The lines of a per-row file (km labels, speakers); [] when their count differs from the
    manifest's, after counting every row as skipped (`skip_every_row`)."""
    if not path.is_file():
        raise DataError(f"label file not found: {path}")
    lines = read_lines(path)
    if len(lines) != n_rows:
        skip_every_row(stats, path, n_rows, f"{len(lines)} lines")
        return []
    return lines


def skip_every_row(stats: PipelineStats, path: Path, n_rows: int, found: str) -> None:
    """Counts all `n_rows` rows of a split as skipped because the per-row file `path` holds
    `found` (e.g. '9 lines') instead of one entry per row: the alignment is unknown, so no
    row can be trusted."""
    for _ in range(n_rows):
        stats.problem("label_count_mismatch", str(path), f"{found} for {n_rows} manifest rows")


def speaker_names(data_dir: str | os.PathLike, data_cfg) -> list[str]:
    """Speaker id -> name: the distinct names of <data_dir>/<train_split>.spk, sorted, so that
    every split (and every host) numbers the training speakers the same way."""
    cfg = resolve(data_cfg)
    path = Path(data_dir) / f"{cfg.train_split}.spk"
    if not path.is_file():
        raise DataError(f"speaker file not found: {path}")
    names = {line.decode("utf-8", "replace").strip() for line in read_lines(path)}
    return sorted(names - {""})


# ============================================================================ planning
