"""Input pipeline: manifests / eSpeak corpus / TFDS -> bucketed, host-sharded numpy batches.

What train.py calls:

    it = make_train_iter(config.data, seed=s, process_index=i, process_count=n,
                         start_position=saved_position)     # infinite
    batch = next(it); it.position (JSON-able, save it with the checkpoint); it.stats
    for batch in make_eval_iter(config.data, "valid", process_index=i, process_count=n): ...

Batches follow docs/ARCHITECTURE.md ("Batches"): host-local numpy dicts with `audio`,
`audio_mask`, `phones`, `phones_mask`, `labelled`, `weight`. `audio` is padded to the batch's
bucket length, `phones` always to `max_label_len`, so shapes take a few static values.

Design (manifest / eSpeak sources). Manifests list every utterance's length, so the batches
of an epoch are planned in Python before any audio is read:

  1. shuffle the usable utterances with a generator seeded by (seed, epoch);
  2. put each into the smallest bucket >= its (cropped) length;
  3. cut each bucket into GLOBAL batches of `batch_size_for(bucket)`; the leftovers of a bucket
     join the next bigger bucket (they fit), so only the leftovers of the largest bucket are
     dropped (< one batch per epoch, different utterances every epoch);
  4. shuffle the batch order with (seed, epoch).

Host `i` of `n` decodes rows [i*B/n, (i+1)*B/n) of every global batch, so hosts read disjoint
data that covers the epoch and agree on every batch's shape. The position of an iterator is
{"epoch", "batch"}: resuming rebuilds the plan of that epoch and starts at that batch, which
costs nothing and gives bit-identical batches (crop offsets are a hash of
(seed, epoch, utterance), not drawn from a stateful generator). tf.data only runs the decoding
(a numpy function per batch: soundfile reads just the cropped window) in parallel and prefetches.

TFDS sources have no lengths up front, so they stream: decode every example, group by bucket
(`group_by_window`), batch. A rejected (skipped / filtered) example is not dropped inside
tf.data: it comes out as a batch of its own at its place in the stream and is counted when the
consumer reaches it, so the counts after N batches do not depend on how far the prefetching
threads ran ahead. The position counts the elements of the epoch's stream consumed (batches,
rejected examples, dropped partial batches), and resuming replays the epoch up to it (exact,
but costs reading that part again). For multi-host runs every host reads the whole stream and
keeps its slice of each global batch: this is what keeps the bucket sequence identical on all
hosts, at the price of reading the data once per host. For large multi-host runs, export the
TFDS split to a manifest.

Bad input policy. Every input problem is either a counted skip (default) or, with
`strict=True`, a `DataError` naming the file, the line and the problem. Never a silent wrong
example. Checked when the split is loaded (cheap, whole split, same counts on every host):
malformed manifest lines, audio files that do not exist, `num_samples` == 0, label files whose
line count differs from the manifest (the alignment is unknown, so ALL rows of the split are
skipped), empty or non-UTF-8 transcripts, phones not in the vocabulary. Checked when the audio
is decoded (host-local counts): unreadable or truncated files, a sample rate other than
`sample_rate`, more than one channel, a frame count that disagrees with the manifest,
non-finite samples. A row that fails at decode time stays in its batch (shapes and host
agreement depend on it) as a weight-0 copy of a good row of the same batch: `weight` 0,
`labelled` 0, phones zeroed, so models that weight their losses by `weight` never learn from
it. Each reason is logged once, with the first file, then only counted (`it.stats`).
Length filters are not errors, they are counted as "filtered": shorter than `min_sample_len`,
longer than `max_sample_len` when `crop=False`, more than `max_label_len` phones. With
`crop=True` a labelled utterance longer than `max_sample_len` is trained as UNLABELLED (its
transcript does not match a crop); counted as "labelled_cropped". `labelled_only=True` (CTC
fine-tuning on the `labelled_fraction` subset) trains on the labelled rows alone; it needs
`crop=False`, so no labelled utterance turns unlabelled.

Unlabelled data from elsewhere (manifest / eSpeak sources): `data.unlabelled_manifests` lists
more manifests (paths to `.tsv` files, same format, no label files read) whose utterances join
the training split with `labelled` 0 — UniSpeech's labelled + unlabelled pre-training, e.g.
transcribed speech of one domain and untranscribed speech of the target domain. Their rows go
through the same checks (counted under the same reasons, decode problems name their own
manifest and line); not with `labelled_only`, the SpeechT5 keys, or a TFDS source.

Training batches can be augmented (`data.augment_speed`, `augment_tilt_db`, `augment_bumps_db`;
data/augment.py): each utterance as read (after its crop, before normalisation and before the
SpeechT5 mel target is computed) is resampled and equalised by draws keyed on (seed, epoch,
utterance), so resuming repeats them. A slowed-down utterance is capped at its batch row.

Evaluation never crops or drops: utterances longer than the largest bucket go to extra
buckets that are multiples of it, and the last batch is completed with weight-0 copies so that
every host yields the same number of batches and every utterance is seen exactly once.

SpeechT5 (manifest / eSpeak sources). Speech batches can carry more keys (docs/ARCHITECTURE.md):
`data.km_labels='km'` adds the frame labels `km` [B, T] + `km_mask` from <split>.km (written by
`python -m unispeech_jax.tools.kmeans_labels`; in `data.km_dir` if set), one id per 20 ms conv
frame; a row whose label count is not `conv_frames(num_samples)` is skipped at load time
("km_length_mismatch"), and crops then start on a multiple of the 320-sample hop so that the
crop's labels are a slice of the utterance's. `data.log_mel=True` adds the SpeechT5 log-mel
target `mel` [B, F, 80] + `mel_mask` (data/features.py, computed by the decoding function from
each utterance's own samples, before normalisation). `data.speakers=True` adds `speaker` [B],
the index of the <split>.spk name among the sorted names of the train split (-1 if the speaker
is not a training speaker, as for held-out voices). Text batches come from `make_text_iter`
(with `infill=True`: BART-noised `text_source`); `mix` interleaves the two kinds.
For joint pre-training, `data.km_clusters=k` (with `km_dir` '') makes MFCC k-means labels on
first use, cached in <data dir>/km<k>, and `data.text_ratio=r` makes `make_train_iter` yield
text-infilling batches (of `data.text_file`, default <data dir>/<train_split>.wrd, tokenised
by `sentencepiece_model`) for a fraction r of the steps, resumable from its position.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import math
import os
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from unispeech_jax.data import augment as augment_lib
from unispeech_jax.data import features
from unispeech_jax.data import text as text_lib

logger = logging.getLogger(__name__)


# ============================================================================ config


def default_config():
    """The `config.data` block with every key this module reads (ml_collections.ConfigDict)."""
    import ml_collections

    return ml_collections.ConfigDict(dict(_DEFAULTS, corpus=dict(_DEFAULTS["corpus"])))


_DEFAULTS: dict[str, Any] = dict(
    source="espeak",  # 'espeak' | 'manifest' | 'tfds'
    corpus=dict(hours=1.0, languages="en-us", noise_snr=0.0, reverb=False, seed=0),
    manifest_dir="",
    tfds_name="",
    tfds_data_dir="",
    tfds_audio_key="speech",
    tfds_text_key="text",
    train_split="train",
    eval_split="valid",
    test_split="test",
    labels="phn",  # label file extension; '' = no labels (all unlabelled)
    vocab_path="",  # phone dict; default <data dir>/dict.<labels>.txt
    labelled_fraction=1.0,
    # Train on the labelled rows only: CTC fine-tuning on a labelled subset, where unlabelled
    # utterances would cost a forward/backward pass each and add nothing. Needs crop=False.
    labelled_only=False,
    # Manifests (.tsv paths) whose utterances join the training split without transcripts.
    unlabelled_manifests=(),
    sample_rate=16000,
    normalize=False,
    crop=True,
    min_sample_len=8000,
    max_sample_len=96000,
    bucket_boundaries=(32000, 48000, 64000, 96000),
    max_samples_per_batch=384000,
    batch_multiple=8,
    max_label_len=256,
    shuffle=True,
    shuffle_buffer=1000,  # shuffle_buffer: streaming (tfds) sources only
    prefetch=2,
    num_parallel_calls=2,
    strict=False,
    # Training-only waveform augmentation (data/augment.py); 0 turns a part off.
    augment_speed=0.0,  # speed factor from U[1-a, 1+a] (pitch, formants, tempo)
    augment_tilt_db=0.0,  # spectral tilt from U[-t, t] dB/octave about 1 kHz
    augment_bumps_db=0.0,  # equaliser gains from U[-b, b] dB at 150 Hz..4.8 kHz
    # SpeechT5 speech batches (manifest / eSpeak sources only; see "SpeechT5" above).
    km_labels="",  # frame label file extension, e.g. 'km'; '' = no `km`
    km_dir="",  # folder of <split>.<km_labels>; default the data dir
    km_clusters=0,  # k > 0: with km_dir '', make k-means labels on first use
    log_mel=False,  # add the log-mel target `mel`
    speakers=False,  # add `speaker` ids from <split>.spk
    # SpeechT5 joint pre-training (manifest / eSpeak sources; see "SpeechT5" above).
    text_ratio=0.0,  # fraction of training batches that are text infilling
    text_file="",  # one sentence a line; default <data dir>/<train_split>.wrd
    sp_model="",  # SentencePiece model; default <data dir>/spm_char.model
    text_bucket_boundaries=(32, 64, 128, 256),  # token lengths of the text buckets
    max_tokens_per_batch=8192,  # text batch size rule, as max_samples_per_batch
)


@dataclasses.dataclass(frozen=True)
class _Cfg:
    """`config.data` with defaults filled in and checked."""

    source: str
    corpus: dict
    manifest_dir: str
    tfds_name: str
    tfds_data_dir: str
    tfds_audio_key: str
    tfds_text_key: str
    train_split: str
    eval_split: str
    test_split: str
    labels: str
    vocab_path: str
    labelled_fraction: float
    labelled_only: bool
    unlabelled_manifests: tuple
    sample_rate: int
    normalize: bool
    crop: bool
    min_sample_len: int
    max_sample_len: int
    bucket_boundaries: tuple
    max_samples_per_batch: int
    batch_multiple: int
    max_label_len: int
    shuffle: bool
    shuffle_buffer: int
    prefetch: int
    num_parallel_calls: int
    strict: bool
    augment_speed: float
    augment_tilt_db: float
    augment_bumps_db: float
    km_labels: str
    km_dir: str
    km_clusters: int
    log_mel: bool
    speakers: bool
    text_ratio: float
    text_file: str
    sp_model: str
    text_bucket_boundaries: tuple
    max_tokens_per_batch: int


def _resolve(data_cfg) -> _Cfg:
    if isinstance(data_cfg, _Cfg):
        return data_cfg
    given = (
        {}
        if data_cfg is None
        else (data_cfg.to_dict() if hasattr(data_cfg, "to_dict") else dict(data_cfg))
    )
    values = {k: given.get(k, v) for k, v in _DEFAULTS.items()}
    values["corpus"] = {**_DEFAULTS["corpus"], **dict(given.get("corpus") or {})}
    values["bucket_boundaries"] = tuple(int(b) for b in values["bucket_boundaries"])
    values["text_bucket_boundaries"] = tuple(int(b) for b in values["text_bucket_boundaries"])
    extra = values["unlabelled_manifests"]
    values["unlabelled_manifests"] = (extra,) if isinstance(extra, str) else tuple(extra)
    cfg = _Cfg(**values)
    b = cfg.bucket_boundaries
    if not b or list(b) != sorted(set(b)):
        raise ValueError(f"data.bucket_boundaries must be strictly increasing, got {b}")
    if b[-1] != cfg.max_sample_len:
        raise ValueError(
            f"the last bucket boundary ({b[-1]}) must equal data.max_sample_len "
            f"({cfg.max_sample_len})"
        )
    if not 0 <= cfg.min_sample_len <= cfg.max_sample_len:
        raise ValueError("need 0 <= data.min_sample_len <= data.max_sample_len")
    if not 0.0 <= cfg.labelled_fraction <= 1.0:
        raise ValueError("data.labelled_fraction must be in [0, 1]")
    if cfg.labelled_only and (cfg.crop or not cfg.labels or cfg.labelled_fraction == 0):
        raise ValueError(
            "data.labelled_only needs data.crop=False (a crop loses its "
            "transcript), data.labels set and data.labelled_fraction > 0"
        )
    if cfg.unlabelled_manifests and (
        cfg.source == "tfds"
        or cfg.labelled_only
        or cfg.km_labels
        or cfg.speakers
        or cfg.text_ratio > 0
    ):
        raise ValueError(
            "data.unlabelled_manifests needs a manifest or espeak source and "
            "excludes data.labelled_only, km_labels, speakers and text_ratio"
        )
    if cfg.source not in ("espeak", "manifest", "tfds"):
        raise ValueError(f"unknown data.source {cfg.source!r}")
    if cfg.source == "tfds" and (
        cfg.km_labels or cfg.log_mel or cfg.speakers or cfg.text_ratio > 0
    ):
        raise ValueError(
            "data.km_labels, data.log_mel, data.speakers and data.text_ratio need a "
            "manifest or espeak source (export the TFDS split to a manifest)"
        )
    if not 0.0 <= cfg.text_ratio < 1.0:
        raise ValueError(f"data.text_ratio must be in [0, 1), got {cfg.text_ratio}")
    augment_of(cfg)  # checks the ranges
    if cfg.augment_speed > 0 and cfg.km_labels:
        raise ValueError(
            "data.augment_speed changes the duration, so the 20 ms frame labels "
            "(data.km_labels) would no longer line up: use the equaliser only"
        )
    return cfg


def augment_of(cfg: _Cfg) -> augment_lib.Augment:
    return augment_lib.Augment(
        speed=cfg.augment_speed, tilt_db=cfg.augment_tilt_db, bumps_db=cfg.augment_bumps_db
    )


def batch_size_for(data_cfg, bucket_len: int) -> int:
    """GLOBAL batch size of a bucket: max(m, floor(max_samples_per_batch / bucket_len) rounded
    down to a multiple of m), m = batch_multiple."""
    cfg = _resolve(data_cfg)
    return _batch_rule(cfg.max_samples_per_batch, cfg.batch_multiple, bucket_len)


def _batch_rule(budget: int, multiple: int, length: int) -> int:
    return max(multiple, (budget // int(length)) // multiple * multiple)


# ============================================================================ errors, stats


class DataError(Exception):
    """Bad input data (strict mode) or an unusable data configuration."""


# Reasons an example is skipped (bad data) or filtered (fine data outside the configured range).
SKIP_REASONS = (
    "bad_manifest_line",
    "missing_audio",
    "empty_audio",
    "label_count_mismatch",
    "empty_transcript",
    "non_utf8_transcript",
    "unknown_phone",
    "unreadable",
    "truncated",
    "wrong_sample_rate",
    "multi_channel",
    "length_mismatch",
    "non_finite",
    "bad_km_labels",
    "km_length_mismatch",
    "empty_speaker",
)
FILTER_REASONS = ("too_short", "too_long", "label_too_long")
_DECODE_CODES = {r: i + 1 for i, r in enumerate(SKIP_REASONS)}
_CODE_REASONS = {i: r for r, i in _DECODE_CODES.items()}


class PipelineStats:
    """Counters of one iterator; `as_dict()` is what train.py logs.

    Split-level counts (from loading the manifest) cover the whole split and are the same on
    every host; decode-level counts cover the examples this host decoded.
    """

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.skipped: collections.Counter = collections.Counter()
        self.filtered: collections.Counter = collections.Counter()
        self.cropped = 0  # examples cropped to max_sample_len when decoded
        self.labelled_cropped = 0  # labelled utterances trained as unlabelled (crop)
        self.dropped_remainder = 0  # examples left out of an epoch's last partial batch
        self.examples = 0  # real (weight 1) examples yielded
        self.batches = 0
        self.audio_samples = 0  # real samples yielded
        self.padded_samples = 0  # total samples yielded (real + padding)
        self._first: dict[str, str] = {}
        self._lock = threading.Lock()

    def problem(self, reason: str, where: str, detail: str = "", *, filtered=False) -> None:
        """Records one skipped/filtered example; raises DataError for a skip in strict mode."""
        message = f"{where}: {reason}" + (f" ({detail})" if detail else "")
        if self.strict and not filtered:
            raise DataError(message)
        with self._lock:
            counter = self.filtered if filtered else self.skipped
            counter[reason] += 1
            first = reason not in self._first
            if first:
                self._first[reason] = where
        if first:
            logger.warning(
                "%s example: %s; further ones are only counted",
                "filtering" if filtered else "skipping",
                message,
            )

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.audio_samples / self.padded_samples if self.padded_samples else 0.0

    def __call__(self) -> dict[str, float]:
        """`it.stats()` == `it.stats.as_dict()`."""
        return self.as_dict()

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = {f"skipped/{k}": v for k, v in sorted(self.skipped.items())}
        out.update({f"filtered/{k}": v for k, v in sorted(self.filtered.items())})
        out.update(
            skipped=sum(self.skipped.values()),
            filtered=sum(self.filtered.values()),
            cropped=self.cropped,
            labelled_cropped=self.labelled_cropped,
            dropped_remainder=self.dropped_remainder,
            examples=self.examples,
            batches=self.batches,
            padding_fraction=self.padding_fraction,
        )
        return out


# ============================================================================ data dir, vocab


def resolve_data_dir(data_cfg) -> Path:
    """The folder with the manifests (for 'espeak': builds/looks up the corpus cache)."""
    cfg = _resolve(data_cfg)
    if cfg.source == "espeak":
        from unispeech_jax.data.corpus import ensure_corpus

        c = dict(cfg.corpus)
        if isinstance(c.get("languages"), str):
            c["languages"] = [s.strip() for s in c["languages"].split(",") if s.strip()]
        if not c.get("noise_snr"):
            c["noise_snr"] = None  # 0 = no noise
        return Path(ensure_corpus(**c))
    if cfg.source == "manifest":
        if not cfg.manifest_dir:
            raise DataError("data.source='manifest' needs data.manifest_dir")
        return Path(cfg.manifest_dir)
    return Path(cfg.tfds_data_dir or os.path.expanduser("~/tensorflow_datasets"))


def vocab(data_cfg) -> text_lib.PhoneVocab:
    """The label vocabulary: `vocab_path`, else <data dir>/dict.<labels>.txt."""
    cfg = _resolve(data_cfg)
    if cfg.vocab_path:
        path = Path(cfg.vocab_path)
    elif cfg.labels:
        path = resolve_data_dir(cfg) / f"dict.{cfg.labels}.txt"
    else:
        raise DataError("data.labels is '' (no labels): there is no label vocabulary")
    if not path.is_file():
        raise DataError(f"label vocabulary not found: {path}")
    return text_lib.PhoneVocab.load(path)


# ============================================================================ manifests


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
        speakers on either: `_resolve` excludes them with `unlabelled_manifests`)."""
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
        return self.label_ids[self.label_offsets[i] : self.label_offsets[i + 1]]

    def km_of(self, i: int) -> np.ndarray:
        return self.km_ids[self.km_offsets[i] : self.km_offsets[i + 1]]


def _read_lines(path: Path) -> list[bytes]:
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [s[:-1] if s.endswith(b"\r") else s for s in lines]


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
    cfg = _resolve(data_cfg)
    stats = stats if stats is not None else PipelineStats(cfg.strict)
    crop = cfg.crop if crop is None else crop
    manifest = Path(data_dir) / f"{split}.tsv"
    if not manifest.is_file():
        raise DataError(f"manifest not found: {manifest}")
    raw = _read_lines(manifest)
    if not raw:
        raise DataError(f"{manifest}:1: empty manifest (expected the root line)")
    try:
        root = _resolve_root(raw[0].decode("utf-8").strip(), manifest)
    except UnicodeDecodeError:
        raise DataError(f"{manifest}:1: root line is not UTF-8") from None
    rows = raw[1:]
    n_rows = len(rows)

    labels: list[bytes] | None = None
    label_file = Path(data_dir) / f"{split}.{cfg.labels}"
    if with_labels and cfg.labels:
        if not label_file.is_file():
            raise DataError(
                f"label file not found: {label_file} (set data.labels='' for unlabelled data)"
            )
        labels = _read_lines(label_file)
        if len(labels) != n_rows:
            for _ in range(n_rows):  # alignment unknown: no row can be trusted
                stats.problem(
                    "label_count_mismatch",
                    str(label_file),
                    f"{len(labels)} lines for {n_rows} manifest rows",
                )
            rows = []

    km_file = km_dir(cfg, data_dir) / f"{split}.{cfg.km_labels}"
    km_lines = _aligned_lines(km_file, n_rows, stats) if cfg.km_labels else None
    spk_file = Path(data_dir) / f"{split}.spk"
    spk_lines = _aligned_lines(spk_file, n_rows, stats) if cfg.speakers else None
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
            try:
                line = labels[j].decode("utf-8")
            except UnicodeDecodeError:
                stats.problem("non_utf8_transcript", lwhere)
                continue
            if not line.strip():
                stats.problem("empty_transcript", lwhere)
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
        if filter_short and n < cfg.min_sample_len:
            stats.problem("too_short", where, f"{n} samples", filtered=True)
            continue
        if not crop and filter_short and n > cfg.max_sample_len:
            stats.problem("too_long", where, f"{n} samples", filtered=True)
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
    k-means labels of MFCC features made on first use and cached in <data dir>/km<k>
    (tools/kmeans_labels.ensure_labels); else the data dir itself."""
    cfg = _resolve(data_cfg)
    if cfg.km_dir:
        return Path(cfg.km_dir)
    if cfg.km_clusters > 0:
        from unispeech_jax.tools import kmeans_labels  # it reads manifests through this module

        return kmeans_labels.ensure_labels(
            data_dir, cfg.km_clusters, splits=(cfg.train_split, cfg.eval_split, cfg.test_split)
        )
    return Path(data_dir)


def _aligned_lines(path: Path, n_rows: int, stats: PipelineStats) -> list[bytes]:
    """The lines of a per-row file (km labels, speakers); [] when their count differs from the
    manifest's, after counting every row as skipped (the alignment is unknown)."""
    if not path.is_file():
        raise DataError(f"label file not found: {path}")
    lines = _read_lines(path)
    if len(lines) != n_rows:
        for _ in range(n_rows):
            stats.problem(
                "label_count_mismatch", str(path), f"{len(lines)} lines for {n_rows} manifest rows"
            )
        return []
    return lines


def speaker_names(data_dir: str | os.PathLike, data_cfg) -> list[str]:
    """Speaker id -> name: the distinct names of <data_dir>/<train_split>.spk, sorted, so that
    every split (and every host) numbers the training speakers the same way."""
    cfg = _resolve(data_cfg)
    path = Path(data_dir) / f"{cfg.train_split}.spk"
    if not path.is_file():
        raise DataError(f"speaker file not found: {path}")
    names = {line.decode("utf-8", "replace").strip() for line in _read_lines(path)}
    return sorted(names - {""})


# ============================================================================ planning


def _hash(*keys) -> np.ndarray:
    """splitmix64 of a tuple of integer arrays (broadcast) -> uint64; a stateless RNG."""
    with np.errstate(over="ignore"):
        h = np.zeros(np.broadcast(*[np.asarray(k) for k in keys]).shape, np.uint64)
        for k in keys:
            h = h ^ np.asarray(k).astype(np.uint64)
            h = h + np.uint64(0x9E3779B97F4A7C15)
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
    return h


_AUGMENT_KEY = 0xA06  # keeps the augmentation draws apart from the crop and label draws


def _uniform(*keys) -> np.ndarray:
    return (_hash(*keys) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def crop_offsets(seed: int, epoch: int, index, length, take) -> np.ndarray:
    """Start of the crop window of utterance `index` in `epoch`: uniform in [0, length-take]."""
    span = np.asarray(length, np.int64) - np.asarray(take, np.int64) + 1
    return np.minimum((_uniform(seed, epoch, index) * span).astype(np.int64), span - 1)


def eval_bucket_len(boundaries: Sequence[int], length: int) -> int:
    """Smallest boundary >= length; past the last, the next multiple of the last boundary."""
    k = int(np.searchsorted(boundaries, length, side="left"))
    if k < len(boundaries):
        return int(boundaries[k])
    return int(math.ceil(length / boundaries[-1]) * boundaries[-1])


def bucket_lengths(boundaries: Sequence[int], lengths: np.ndarray) -> np.ndarray:
    """`eval_bucket_len` of every length (vectorised) -> int64."""
    bounds = np.asarray(boundaries, np.int64)
    lengths = np.asarray(lengths, np.int64)
    k = np.searchsorted(bounds, lengths, side="left")
    over = -(-lengths // bounds[-1]) * bounds[-1]
    return np.where(k < len(bounds), bounds[np.minimum(k, len(bounds) - 1)], over)


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
    bucket_len: int
    index: np.ndarray  # int64 [B] utterance indices (into the Split)
    weight: np.ndarray  # float32 [B]


def plan_batches(
    lengths: np.ndarray,
    order: np.ndarray,
    boundaries: Sequence[int],
    batch_size: Callable[[int], int],
    *,
    pad_last: bool,
) -> tuple[list, int]:
    """Groups `order` (utterance indices) into batches by bucket; see the module docstring.

    Leftovers of a bucket are carried into the next bigger one. The final leftovers are padded
    with weight-0 repeats (`pad_last`) or dropped. Returns (batches, number dropped).
    """
    bucket_of = bucket_lengths(boundaries, lengths[order])
    batches: list[PlannedBatch] = []
    carry = np.zeros(0, np.int64)
    buckets = sorted(set(bucket_of.tolist()))
    for bl in buckets:
        pool = np.concatenate([carry, order[bucket_of == bl]])
        size = batch_size(bl)
        full = len(pool) // size
        for j in range(full):
            batches.append(
                PlannedBatch(bl, pool[j * size : (j + 1) * size], np.ones(size, np.float32))
            )
        carry = pool[full * size :]
    if len(carry) and pad_last:
        size = batch_size(buckets[-1])
        pad = size - len(carry)
        index = np.concatenate([carry, np.full(pad, carry[0], np.int64)])
        weight = np.concatenate([np.ones(len(carry), np.float32), np.zeros(pad, np.float32)])
        batches.append(PlannedBatch(buckets[-1], index, weight))
        carry = carry[:0]
    return batches, len(carry)


def _epoch_plan(
    lengths: np.ndarray, cfg: _Cfg, seed: int, epoch: int, batch_size: Callable[[int], int]
) -> tuple[list, int]:
    n = len(lengths)
    if cfg.shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    eff = np.minimum(lengths, cfg.max_sample_len) if cfg.crop else lengths
    batches, dropped = plan_batches(eff, order, cfg.bucket_boundaries, batch_size, pad_last=False)
    if cfg.shuffle:
        perm = np.random.default_rng([seed, epoch, 1]).permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches, dropped


def _local_rows(size: int, process_index: int, process_count: int) -> slice:
    if size % process_count:
        raise ValueError(
            f"global batch size {size} is not divisible by process_count "
            f"{process_count}; make data.batch_multiple a multiple of it"
        )
    b = size // process_count
    return slice(process_index * b, (process_index + 1) * b)


def _start(position) -> tuple[int, int]:
    if not position:
        return 0, 0
    if isinstance(position, Mapping):
        return int(position.get("epoch", 0)), int(position.get("batch", 0))
    raise ValueError(f"bad start_position {position!r}")


# ============================================================================ decoding


def _read_audio(path: str, expected_len: int, offset: int, take: int, sample_rate: int):
    """-> (float32 [take] or None, skip reason or None, detail)."""
    try:
        with sf.SoundFile(path) as f:
            if f.samplerate != sample_rate:
                return None, "wrong_sample_rate", f"{f.samplerate} Hz"
            if f.channels != 1:
                return None, "multi_channel", f"{f.channels} channels"
            if f.frames == 0:
                return None, "empty_audio", ""
            if f.frames != expected_len:
                return None, "length_mismatch", f"file {f.frames} vs manifest {expected_len}"
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


def _normalize(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean()) / np.sqrt(x.var() + 1e-5)).astype(np.float32)


class _ManifestDecoder:
    """Decodes the host-local rows of one planned batch (runs in tf.data threads)."""

    def __init__(
        self, split: Split, cfg: _Cfg, seed: int, crop: bool, augment: augment_lib.Augment | None
    ):
        self.split, self.cfg, self.seed, self.crop = split, cfg, seed, crop
        self.augment = augment if augment is not None and augment.active else None
        self.details: dict[int, str] = {}

    def __call__(self, epoch, bucket_len, index, weight):
        split, cfg = self.split, self.cfg
        b, bucket_len, L = len(index), int(bucket_len), cfg.max_label_len
        extra = {
            key: np.full((b, *shape(bucket_len)), fill, dtype)
            for key, dtype, shape, fill in _extra_keys(cfg)
        }
        audio = np.zeros((b, bucket_len), np.float32)
        audio_mask = np.zeros((b, bucket_len), bool)
        phones = np.zeros((b, L), np.int32)
        phones_mask = np.zeros((b, L), bool)
        labelled = np.zeros(b, np.float32)
        status = np.zeros(b, np.int32)
        cropped = np.zeros(b, bool)
        for r, i in enumerate(index):
            n = int(split.lengths[i])
            take = min(n, cfg.max_sample_len) if self.crop else n
            offset = self._offset(int(epoch), i, n, take) if take < n else 0
            x, reason, detail = _read_audio(split.paths[i], n, offset, take, cfg.sample_rate)
            if reason is not None:
                status[r] = _DECODE_CODES[reason]
                self.details[int(i)] = detail
                continue
            if self.augment is not None:
                rng = np.random.default_rng(int(_hash(self.seed, _AUGMENT_KEY, epoch, i)))
                x = augment_lib.augment(x, self.augment, rng, cfg.sample_rate, bucket_len)
            if "km" in extra:
                first, frames = offset // features.CONV_HOP, features.conv_frames(take)
                extra["km"][r, :frames] = split.km_of(i)[first : first + frames]
                extra["km_mask"][r, :frames] = True
            if "mel" in extra:  # of the waveform as read: normalising is a model input choice
                mel = features.log_mel(x, cfg.sample_rate)
                extra["mel"][r, : len(mel)] = mel
                extra["mel_mask"][r, : len(mel)] = True
            if "speaker" in extra:
                extra["speaker"][r] = split.speaker[i]
            audio[r, : len(x)] = _normalize(x) if cfg.normalize else x
            audio_mask[r, : len(x)] = True
            cropped[r] = take < n
            if split.labelled[i]:
                ids = split.labels_of(i)
                phones[r, : len(ids)] = ids
                phones_mask[r, : len(ids)] = True
                labelled[r] = 1.0
        return (
            audio,
            audio_mask,
            phones,
            phones_mask,
            labelled,
            weight,
            status,
            cropped,
            *extra.values(),
        )

    def _offset(self, epoch: int, i: int, n: int, take: int) -> int:
        """Crop start; a multiple of the conv hop when km labels come along, so that the
        crop's frames are frames of the whole utterance."""
        if self.split.km_offsets is None:
            return int(crop_offsets(self.seed, epoch, i, n, take))
        starts = (n - take) // features.CONV_HOP + 1
        return int(crop_offsets(self.seed, epoch, i, starts, 1)) * features.CONV_HOP


_BATCH_KEYS = ("audio", "audio_mask", "phones", "phones_mask", "labelled", "weight")


def _extra_keys(cfg: _Cfg) -> list[tuple[str, Any, Callable[[int], tuple], Any]]:
    """The SpeechT5 keys `cfg` asks for: (key, dtype, shape of one row given the bucket
    length, fill value) in decoder output order."""
    keys = []
    if cfg.km_labels:
        frames = lambda s: (features.conv_frames(s),)
        keys += [("km", np.int32, frames, 0), ("km_mask", bool, frames, False)]
    if cfg.log_mel:
        keys += [
            ("mel", np.float32, lambda s: (features.mel_frames(s), features.MEL_BINS), 0.0),
            ("mel_mask", bool, lambda s: (features.mel_frames(s),), False),
        ]
    if cfg.speakers:
        keys += [("speaker", np.int32, lambda s: (), -1)]
    return keys


def _repair(batch: dict, bad: np.ndarray) -> None:
    """Turns rows `bad` into weight-0 copies of a good row (zeros if there is none)."""
    good = np.flatnonzero(~bad & (batch["weight"] > 0))
    if not len(good):
        good = np.flatnonzero(~bad)
    copied = ["audio", "audio_mask", *(k for k in batch if k not in _BATCH_KEYS)]
    for r in np.flatnonzero(bad):
        if len(good):
            for k in copied:
                batch[k][r] = batch[k][good[0]]
        else:  # nothing decodable on this host: a silent, fully masked-in row
            batch["audio"][r] = 0.0
            batch["audio_mask"][r] = True
        batch["phones"][r] = 0
        batch["phones_mask"][r] = False
        batch["labelled"][r] = 0.0
        batch["weight"][r] = 0.0


def _account(stats: PipelineStats, batch: dict) -> None:
    real = batch["weight"] > 0
    stats.batches += 1
    stats.examples += int(real.sum())
    stats.audio_samples += int(batch["audio_mask"][real].sum())
    stats.padded_samples += int(real.sum()) * batch["audio"].shape[1]


# ============================================================================ iterators


def _tf():
    import tensorflow as tf

    for kind in ("GPU", "TPU"):  # the input pipeline must never take an accelerator from JAX
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):
            pass
    return tf


class BatchIterator:
    """Iterator of host-local batch dicts with `.position`, `.stats` (and `.num_batches` for
    one-pass iterators)."""

    def __init__(self, batches: Iterator, position, stats: PipelineStats, num_batches=None):
        self._batches = batches
        self.position = position
        self.stats = stats
        self.num_batches = num_batches

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch, self.position = next(self._batches)
        return batch

    def __len__(self):
        if self.num_batches is None:
            raise TypeError("infinite iterator")
        return self.num_batches

    def close(self) -> None:
        """Stops the tf.data threads now. Left to interpreter shutdown, a thread inside a
        `numpy_function` decoder can wait for the GIL forever and the process never exits."""
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()


def _planned_iterator(
    split: Split,
    cfg: _Cfg,
    plans: Callable[[int], list],
    *,
    seed: int,
    crop: bool,
    process_index: int,
    process_count: int,
    start: tuple[int, int],
    stats: PipelineStats,
    one_pass: bool,
    augment: augment_lib.Augment | None = None,
):
    """tf.data over planned batches: decode in parallel, prefetch; repair/count in Python."""
    tf = _tf()
    decoder = _ManifestDecoder(split, cfg, seed, crop, augment)
    first = plans(start[0])

    def plan_arrays(epoch):
        """The host-local plan of one epoch as arrays (rows padded to the largest batch)."""
        plan = first if epoch == start[0] else plans(int(epoch))
        n, local = len(plan), max(len(p.index) for p in plan) // process_count
        index, weight = np.zeros((n, local), np.int64), np.zeros((n, local), np.float32)
        size, bucket = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for i, p in enumerate(plan):
            rows = _local_rows(len(p.index), process_index, process_count)
            size[i], bucket[i] = rows.stop - rows.start, p.bucket_len
            index[i, : size[i]], weight[i, : size[i]] = p.index[rows], p.weight[rows]
        epochs, numbers = np.full(n, epoch, np.int64), np.arange(n, dtype=np.int64)
        return epochs, numbers, bucket, size, index, weight

    def epoch_dataset(epoch):
        arrays = tf.numpy_function(plan_arrays, [epoch], [tf.int64] * 5 + [tf.float32])
        for t, rank in zip(arrays, (1, 1, 1, 1, 2, 2)):
            t.set_shape([None] * rank)
        return tf.data.Dataset.from_tensor_slices(tuple(arrays))

    # No from_generator: a plain range of epochs, expanded by a numpy function per epoch.
    last = start[0] + 1 if one_pass else np.iinfo(np.int64).max
    ds = tf.data.Dataset.range(start[0], last).flat_map(epoch_dataset).skip(start[1])

    extra = _extra_keys(cfg)

    def decode(epoch, bucket_len, index, weight):
        out = tf.numpy_function(
            decoder,
            [epoch, bucket_len, index, weight],
            [tf.float32, tf.bool, tf.int32, tf.bool, tf.float32, tf.float32, tf.int32, tf.bool]
            + [tf.as_dtype(dtype) for _, dtype, _, _ in extra],
            stateful=False,
        )
        shapes = (
            [None, None],
            [None, None],
            [None, cfg.max_label_len],
            [None, cfg.max_label_len],
            [None],
            [None],
            [None],
            [None],
        )
        # Rows, then the frame axis (if any), then fixed axes (the 80 mel bins).
        shapes += tuple(
            [None] + ([None, *shape(0)[1:]] if shape(0) else []) for _, _, shape, _ in extra
        )
        for t, shape in zip(out, shapes):
            t.set_shape(shape)
        return tuple(out)

    ds = ds.map(
        lambda e, i, bl, n, idx, w: (e, i, idx[:n], decode(e, bl, idx[:n], w[:n])),
        num_parallel_calls=max(1, cfg.num_parallel_calls),
        deterministic=True,
    )
    ds = ds.prefetch(cfg.prefetch)

    def batches():
        for epoch, i, index, out in ds.as_numpy_iterator():
            batch = dict(zip(_BATCH_KEYS, out[:6]))
            batch.update(zip([key for key, _, _, _ in extra], out[8:]))
            status, cropped = out[6], out[7]
            bad = status != 0
            for r in np.flatnonzero(bad):
                u = int(index[r])
                stats.problem(
                    _CODE_REASONS[int(status[r])], split.where(u), decoder.details.get(u, "")
                )
            if bad.any():
                batch = {k: v.copy() for k, v in batch.items()}  # tf's arrays are read-only
                _repair(batch, bad)
            stats.cropped += int(cropped[batch["weight"] > 0].sum())
            _account(stats, batch)
            yield batch, {"epoch": int(epoch), "batch": int(i) + 1}

    return batches()


def make_train_iter(
    data_cfg, *, seed: int, process_index: int = 0, process_count: int = 1, start_position=0
) -> BatchIterator:
    """Infinite iterator of host-local training batches (epochs reshuffled by seed+epoch).

    `start_position`: 0 or an earlier `iterator.position`; the new iterator continues with
    exactly the batch the old one would have yielded next. With `data.text_ratio` > 0 the
    batches are SpeechT5's mix of speech and text-infilling batches (`_speech_and_text_iter`).
    """
    cfg = _resolve(data_cfg)
    if cfg.text_ratio > 0:
        return _speech_and_text_iter(
            cfg,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            start_position=start_position,
        )
    stats = PipelineStats(cfg.strict)
    start = _start(start_position)
    if cfg.source == "tfds":
        return _tfds_iterator(
            cfg,
            cfg.train_split,
            train=True,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            start=start,
            stats=stats,
        )
    data_dir = resolve_data_dir(cfg)
    use_labels = bool(cfg.labels) and cfg.labelled_fraction > 0
    split = load_split(
        data_dir,
        cfg.train_split,
        cfg,
        vocabulary=vocab(cfg) if use_labels else None,
        with_labels=use_labels,
        labelled_fraction=cfg.labelled_fraction,
        labelled_only=cfg.labelled_only,
        seed=seed,
        stats=stats,
    )
    for path in cfg.unlabelled_manifests:
        path = Path(path)
        if path.suffix != ".tsv":
            raise DataError(f"data.unlabelled_manifests: {path} is not a .tsv manifest")
        split = split.appended(
            load_split(
                path.parent,
                path.stem,
                cfg,
                vocabulary=None,
                with_labels=False,
                seed=seed,
                stats=stats,
            )
        )
    if cfg.unlabelled_manifests:
        logger.info(
            "training split: %d utterances, %d of them labelled (%d manifests)",
            len(split),
            int(split.labelled.sum()),
            1 + len(cfg.unlabelled_manifests),
        )
    size = lambda bl: batch_size_for(cfg, bl)
    if not len(split):
        raise DataError(f"{split.manifest}: no usable examples ({stats.as_dict()})")
    _local_rows(size(cfg.bucket_boundaries[0]), process_index, process_count)

    def plans(epoch):
        batches, dropped = _epoch_plan(split.lengths, cfg, seed, epoch, size)
        if not batches:
            raise DataError(
                f"{split.manifest}: {len(split)} usable examples do not fill one "
                f"global batch of {size(cfg.max_sample_len)}"
            )
        stats.dropped_remainder += dropped
        return batches

    # The position remembers which data it indexes: resuming on changed data is possible
    # (the run continues) but no longer reproduces the uninterrupted run, so say so.
    fingerprint = f"{zlib.crc32(split.lengths.tobytes()) ^ zlib.crc32(str(seed).encode()):08x}"
    saved = start_position.get("data") if isinstance(start_position, Mapping) else None
    if saved not in (None, fingerprint):
        logger.warning(
            "%s changed since the position %s was saved: the resumed run does not "
            "repeat the uninterrupted one",
            split.manifest,
            start_position,
        )
    batches = _planned_iterator(
        split,
        cfg,
        plans,
        seed=seed,
        crop=cfg.crop,
        process_index=process_index,
        process_count=process_count,
        start=start,
        stats=stats,
        one_pass=False,
        augment=augment_of(cfg),
    )
    batches = ((b, dict(pos, data=fingerprint)) for b, pos in batches)
    return BatchIterator(
        batches, {"epoch": start[0], "batch": start[1], "data": fingerprint}, stats
    )


def make_eval_iter(
    data_cfg, split: str, *, process_index: int = 0, process_count: int = 1
) -> BatchIterator:
    """One deterministic pass over `split`: no crop, no length filter, every usable utterance
    exactly once across hosts; padding rows have weight 0."""
    cfg = _resolve(data_cfg)
    stats = PipelineStats(cfg.strict)
    if cfg.source == "tfds":
        return _tfds_iterator(
            cfg,
            split,
            train=False,
            seed=0,
            process_index=process_index,
            process_count=process_count,
            start=(0, 0),
            stats=stats,
        )
    data_dir = resolve_data_dir(cfg)
    use_labels = bool(cfg.labels)
    s = load_split(
        data_dir,
        split,
        cfg,
        vocabulary=vocab(cfg) if use_labels else None,
        with_labels=use_labels,
        labelled_fraction=1.0,
        crop=False,
        filter_short=False,
        stats=stats,
    )
    if not len(s):
        raise DataError(f"{s.manifest}: no usable examples ({stats.as_dict()})")
    plan, _ = plan_batches(
        s.lengths,
        np.arange(len(s), dtype=np.int64),
        cfg.bucket_boundaries,
        lambda bl: batch_size_for(cfg, bl),
        pad_last=True,
    )
    for p in plan:
        _local_rows(len(p.index), process_index, process_count)
    batches = _planned_iterator(
        s,
        cfg,
        lambda epoch: plan,
        seed=0,
        crop=False,
        process_index=process_index,
        process_count=process_count,
        start=(0, 0),
        stats=stats,
        one_pass=True,
    )
    return BatchIterator(batches, {"epoch": 0, "batch": 0}, stats, num_batches=len(plan))


# ============================================================================ TFDS (streaming)


def _letters(text: str) -> str:
    """Words -> fairseq letter units: 'HI YOU' -> 'H I | Y O U |'."""
    return " ".join(" ".join(list(w)) + " |" for w in text.upper().split())


# Status codes of a TFDS example: 0 = usable, else the skip / filter reason.
_TFDS_REASONS = (None,) + SKIP_REASONS + FILTER_REASONS
_TFDS_CODES = {r: i for i, r in enumerate(_TFDS_REASONS) if r}
_REJECT = -1  # group_by_window key of a rejected example: it travels alone, in stream order


class _TfdsExample:
    """Per-example numpy function: raw audio + text -> (audio, phone ids, labelled, status,
    cropped, detail).

    A pure function of its inputs: it never touches the stats. tf.data runs it ahead of the
    consumer by however much the parallel map and the prefetch buffers happen to hold, so any
    counting here would depend on thread timing. Problems come back as a status code (and a
    detail) and are counted by the consuming thread when it reaches the example in the stream.
    `cropped`: 0 = not cropped, 1 = cropped, 2 = cropped and therefore unlabelled.
    """

    def __init__(self, cfg: _Cfg, vocabulary, seed: int, train: bool):
        self.cfg, self.vocab, self.seed, self.train = cfg, vocabulary, seed, train
        self.augment = augment_of(cfg)

    def __call__(self, epoch, index, speech, transcript):
        out = self._convert(int(epoch), int(index), speech, transcript)
        if isinstance(out[0], str):  # (reason, detail)
            reason, detail = out
            return (
                np.zeros(0, np.float32),
                np.zeros(0, np.int32),
                np.float32(0),
                np.int32(_TFDS_CODES[reason]),
                np.int32(0),
                np.array(detail.encode("utf-8"), dtype=object),
            )
        x, ids, labelled, cropped = out
        return (
            x,
            ids,
            np.float32(labelled),
            np.int32(0),
            np.int32(cropped),
            np.array(b"", dtype=object),
        )

    def _convert(self, epoch, index, speech, transcript):
        cfg = self.cfg
        if speech.ndim != 1 and not (speech.ndim == 2 and speech.shape[1] == 1):
            return "multi_channel", f"shape {speech.shape}"
        x = speech.reshape(-1)
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        n = len(x)
        if n == 0:
            return "empty_audio", ""
        if not np.isfinite(x).all():
            return "non_finite", ""
        if self.train and n < cfg.min_sample_len:
            return "too_short", f"{n} samples"
        if self.train and not cfg.crop and n > cfg.max_sample_len:
            return "too_long", f"{n} samples"
        ids = np.zeros(0, np.int32)
        labelled = self.vocab is not None and (
            not self.train or _uniform(self.seed, 0x1AB, index) < cfg.labelled_fraction
        )
        if self.vocab is not None:
            try:
                line = transcript.decode("utf-8")
            except UnicodeDecodeError:
                return "non_utf8_transcript", ""
            if cfg.labels == "ltr":
                line = _letters(line)
            if not line.strip():
                return "empty_transcript", ""
            try:
                ids = np.asarray(self.vocab.encode(line), np.int32)
            except text_lib.UnknownPhoneError as e:
                return "unknown_phone", repr(e.phone)
        cropped = 0
        if self.train and cfg.crop and n > cfg.max_sample_len:
            take = cfg.max_sample_len
            x = x[int(crop_offsets(self.seed, epoch, index, n, take)) :][:take]
            cropped = 2 if labelled else 1
            labelled = False
        if labelled and len(ids) > cfg.max_label_len:
            return "label_too_long", f"{len(ids)} > {cfg.max_label_len}"
        if not labelled:
            ids = np.zeros(0, np.int32)
        if self.train and self.augment.active:
            rng = np.random.default_rng(int(_hash(self.seed, _AUGMENT_KEY, epoch, index)))
            x = augment_lib.augment(x, self.augment, rng, cfg.sample_rate, cfg.max_sample_len)
        if cfg.normalize:
            x = _normalize(x)
        return x, ids, labelled, cropped


def _tfds_iterator(
    cfg: _Cfg,
    split: str,
    *,
    train: bool,
    seed: int,
    process_index: int,
    process_count: int,
    start: tuple[int, int],
    stats: PipelineStats,
) -> BatchIterator:
    tf = _tf()
    import tensorflow_datasets as tfds

    if not cfg.tfds_name:
        raise DataError("data.source='tfds' needs data.tfds_name")
    builder = tfds.builder(cfg.tfds_name, data_dir=cfg.tfds_data_dir or None)
    feature = builder.info.features[cfg.tfds_audio_key]
    rate = getattr(feature, "sample_rate", None)
    if rate and rate != cfg.sample_rate:
        raise DataError(
            f"tfds {cfg.tfds_name}: sample rate {rate} != data.sample_rate {cfg.sample_rate}"
        )
    use_labels = bool(cfg.labels) and (not train or cfg.labelled_fraction > 0)
    convert = _TfdsExample(cfg, vocab(cfg) if use_labels else None, seed, train)
    where = f"tfds:{cfg.tfds_name}/{split}"
    boundaries = list(cfg.bucket_boundaries)
    last = boundaries[-1]

    def bucket_len_of(key):  # _REJECT -> 0 (a rejected example has no audio)
        k = tf.cast(key, tf.int64)
        nb = len(boundaries)
        inside = tf.gather(tf.constant(boundaries, tf.int64), tf.clip_by_value(k, 0, nb - 1))
        return tf.where(
            k < 0, tf.constant(0, tf.int64), tf.where(k < nb, inside, (k - nb + 2) * last)
        )

    def key_of(ex):
        n = tf.cast(tf.shape(ex["audio"])[0], tf.int64)
        k = tf.searchsorted(tf.constant(boundaries, tf.int64), tf.reshape(n, [1]), side="left")[0]
        over = tf.cast(tf.math.ceil(n / last), tf.int64) + len(boundaries) - 2
        key = tf.where(k < len(boundaries), tf.cast(k, tf.int64), over)
        return tf.where(ex["status"] != 0, tf.constant(_REJECT, tf.int64), key)

    def size_of(key):  # _REJECT -> windows of 1: emitted where the example is in the stream
        bl = tf.maximum(bucket_len_of(key), 1)
        m = cfg.batch_multiple
        size = tf.maximum(tf.constant(m, tf.int64), (cfg.max_samples_per_batch // bl) // m * m)
        return tf.where(key < 0, tf.constant(1, tf.int64), size)

    def reduce(key, window):
        audio_shape = tf.stack([bucket_len_of(key)])
        return window.padded_batch(
            size_of(key),
            padded_shapes={
                "audio": audio_shape,
                "audio_mask": audio_shape,
                "phones": [cfg.max_label_len],
                "phones_mask": [cfg.max_label_len],
                "labelled": [],
                "weight": [],
                "status": [],
                "cropped": [],
                "index": [],
                "detail": [],
            },
        )

    def epoch_dataset(epoch):
        ds = builder.as_dataset(split=split, shuffle_files=False)
        ds = ds.map(lambda ex: (ex[cfg.tfds_audio_key], ex[cfg.tfds_text_key]))
        ds = ds.enumerate()
        if train and cfg.shuffle:
            ds = ds.shuffle(
                cfg.shuffle_buffer,
                seed=int(_hash(seed, epoch) >> np.uint64(33)),
                reshuffle_each_iteration=False,
            )

        def to_example(index, pair):
            speech, transcript = pair
            # Stateless is right: `convert` is a pure function (no stats, no logging).
            x, ids, labelled, status, cropped, detail = tf.numpy_function(
                convert,
                [tf.constant(epoch, tf.int64), index, speech, transcript],
                [tf.float32, tf.int32, tf.float32, tf.int32, tf.int32, tf.string],
                stateful=False,
            )
            x.set_shape([None])
            ids.set_shape([None])
            return {
                "audio": x,
                "audio_mask": tf.ones_like(x, tf.bool),
                "phones": ids,
                "phones_mask": tf.ones_like(ids, tf.bool),
                "labelled": tf.reshape(labelled, []),
                "weight": tf.ones([], tf.float32),
                "status": tf.reshape(status, []),
                "cropped": tf.reshape(cropped, []),
                "index": index,
                "detail": tf.reshape(detail, []),
            }

        # Rejected examples are not filtered out here: each comes out of group_by_window as a
        # batch of its own, at its place in the stream, and the consumer counts it there.
        ds = ds.map(
            to_example, num_parallel_calls=max(1, cfg.num_parallel_calls), deterministic=True
        )
        if train and cfg.labelled_only:  # rejected examples stay, to be counted below
            ds = ds.filter(lambda ex: (ex["labelled"] > 0) | (ex["status"] != 0))
        ds = ds.group_by_window(key_of, reduce, window_size_func=size_of)
        return ds.prefetch(cfg.prefetch)

    def batches():
        for epoch in range(1) if not train else itertools.count(start[0]):
            skip = start[1] if epoch == start[0] else 0
            consumed, yielded = skip, 0  # consumed: elements of the epoch's dataset
            for batch in epoch_dataset(epoch).skip(skip).as_numpy_iterator():
                consumed += 1
                status = int(batch["status"][0])
                if status:
                    reason = _TFDS_REASONS[status]
                    stats.problem(
                        reason,
                        f"{where}[{int(batch['index'][0])}]",
                        batch["detail"][0].decode("utf-8"),
                        filtered=reason in FILTER_REASONS,
                    )
                    continue
                cropped = batch["cropped"]
                batch = {k: batch[k] for k in _BATCH_KEYS}
                size = batch_size_for(cfg, batch["audio"].shape[1])
                rows = batch["audio"].shape[0]
                if rows < size:
                    if train:
                        stats.dropped_remainder += rows
                        continue
                    pad = np.zeros(size - rows, int)  # weight-0 copies of row 0
                    batch = {k: np.concatenate([v, v[pad]]) for k, v in batch.items()}
                    batch["weight"][rows:] = 0.0
                    batch["labelled"][rows:] = 0.0
                    batch["phones"][rows:] = 0
                    batch["phones_mask"][rows:] = False
                local = _local_rows(size, process_index, process_count)
                batch = {k: v[local] for k, v in batch.items()}
                cropped = cropped[local] if rows == size else np.zeros(0)
                stats.cropped += int((cropped > 0).sum())
                stats.labelled_cropped += int((cropped == 2).sum())
                _account(stats, batch)
                yielded += 1
                yield batch, {"epoch": epoch, "batch": consumed}
            if train and yielded == 0 and skip == 0:
                raise DataError(f"tfds {cfg.tfds_name}/{split}: no usable examples")

    return BatchIterator(batches(), {"epoch": start[0], "batch": start[1]}, stats)


def _infill_batch(
    tokens: list, index: np.ndarray, width: int, seed: int, epoch: int, noise: dict, pad_id: int
) -> dict[str, np.ndarray]:
    """The noised lines `index`: text_source int32 [B, width] (`pad_id` padded),
    text_source_mask bool [B, width]. infill_noise never lengthens a line, so the target's
    bucket width fits."""
    source = np.full((len(index), width), pad_id, np.int32)
    mask = np.zeros((len(index), width), bool)
    for r, u in enumerate(index):
        rng = np.random.default_rng([seed, epoch, int(u), 0x1F1])
        noised, _ = text_lib.infill_noise(rng, tokens[u], **noise)
        source[r, : len(noised)] = noised
        mask[r, : len(noised)] = True
    return {"text_source": source, "text_source_mask": mask}


# ============================================================================ mixing


class MixedIterator:
    """Interleaves batches of several iterators in a fixed ratio (smooth weighted round robin:
    over any window the counts differ from the ratio by less than one batch per source).
    `names` label the sources in `stats()` (default "0", "1", ...)."""

    def __init__(
        self,
        iterators: Sequence,
        weights: Sequence[float],
        seed: int,
        start_position=None,
        names: Sequence[str] | None = None,
    ):
        if len(iterators) != len(weights) or not iterators:
            raise ValueError("mix: need one weight per iterator")
        self._names = [str(i) for i in range(len(iterators))] if names is None else list(names)
        w = np.asarray(weights, np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"mix: bad weights {weights}")
        self._iterators = list(iterators)
        self._weights = w / w.sum()
        if start_position:
            self._step = int(start_position["step"])
            self._credits = np.asarray(start_position["credits"], np.float64)
        else:  # the seed only breaks ties between equal weights
            self._step = 0
            self._credits = np.random.default_rng([seed, 0x313]).uniform(0, 1e-6, len(w))
        self.last_source = -1

    def __iter__(self):
        return self

    def __next__(self):
        credits = self._credits + self._weights
        j = int(np.argmax(credits))
        credits[j] -= 1.0
        batch = next(self._iterators[j])
        self._credits, self._step, self.last_source = credits, self._step + 1, j
        return batch

    @property
    def position(self) -> dict:
        """{"step", "credits", "children": [child positions]}; resume the children from
        "children" and pass the whole dict as `mix(..., start_position=)`."""
        return {
            "step": self._step,
            "credits": [float(c) for c in self._credits],
            "children": [getattr(it, "position", None) for it in self._iterators],
        }

    def close(self) -> None:
        """Closes every source that can be closed (see BatchIterator.close)."""
        for it in self._iterators:
            if hasattr(it, "close"):
                it.close()

    def stats(self) -> dict[str, float]:
        """The counters of every source that has them, as "<name>/<counter>"."""
        return {
            f"{name}/{k}": v
            for name, it in zip(self._names, self._iterators)
            if getattr(it, "stats", None) is not None
            for k, v in it.stats().items()
        }


def mix(
    iterators: Sequence,
    weights: Sequence[float],
    seed: int = 0,
    start_position=None,
    names: Sequence[str] | None = None,
) -> MixedIterator:
    """Deterministic interleaving of batch iterators by `weights` (see MixedIterator)."""
    return MixedIterator(iterators, weights, seed, start_position, names)


def make_mixed_train_iter(
    data_cfgs: Sequence,
    weights: Sequence[float],
    *,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_position=None,
) -> MixedIterator:
    """`mix` over `make_train_iter` of several data configs, resumable from one position."""
    children = (start_position or {}).get("children") or [0] * len(data_cfgs)
    its = [
        make_train_iter(
            c,
            seed=seed + 1000 * k,
            process_index=process_index,
            process_count=process_count,
            start_position=p,
        )
        for k, (c, p) in enumerate(zip(data_cfgs, children))
    ]
    return mix(its, weights, seed, start_position)


def sentencepiece_model(data_cfg) -> Path:
    """The SentencePiece model of the text side: `data.sp_model`, else <data dir>/spm_char.model."""
    cfg = _resolve(data_cfg)
    return Path(cfg.sp_model) if cfg.sp_model else resolve_data_dir(cfg) / "spm_char.model"


def _speech_and_text_iter(
    cfg: _Cfg, *, seed: int, process_index: int, process_count: int, start_position
) -> MixedIterator:
    """SpeechT5 joint pre-training input: the speech batches of `cfg` and text-infilling batches
    of `data.text_file` (default the train split's .wrd), a fraction `data.text_ratio` of them
    text. Resumes from the position of an earlier one (its "children" are the sources')."""
    resume = isinstance(start_position, Mapping) and "children" in start_position
    children = start_position["children"] if resume else [0, 0]
    speech = make_train_iter(
        dataclasses.replace(cfg, text_ratio=0.0),
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        start_position=children[0],
    )
    text_file = cfg.text_file or resolve_data_dir(cfg) / f"{cfg.train_split}.wrd"
    text = make_text_iter(
        text_file,
        sentencepiece_model(cfg),
        seed=seed + 1000,
        process_index=process_index,
        process_count=process_count,
        start_position=children[1],
        bucket_boundaries=cfg.text_bucket_boundaries,
        max_tokens_per_batch=cfg.max_tokens_per_batch,
        batch_multiple=cfg.batch_multiple,
        strict=cfg.strict,
        infill=True,
    )
    return mix(
        [speech, text],
        [1.0 - cfg.text_ratio, cfg.text_ratio],
        seed,
        start_position if resume else None,
        names=("speech", "text"),
    )


# ============================================================================ text only


def make_text_iter(
    text_path: str | os.PathLike,
    sp_model,
    *,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_position=0,
    bucket_boundaries: Sequence[int] = (32, 64, 128, 256),
    max_tokens_per_batch: int = 8192,
    batch_multiple: int = 8,
    add_eos: bool = True,
    shuffle: bool = True,
    strict: bool = False,
    infill: bool = False,
    mask_ratio: float = 0.3,
    poisson_lambda: float = 3.5,
    random_ratio: float = 0.1,
) -> BatchIterator:
    """Infinite text-only batches for SpeechT5: {"text" int32 [B, L], "text_mask" bool [B, L],
    "weight" float32 [B]}, L = the bucket's token length, id tensors padded with
    `text_lib.pad_token_id(sp)` (never a real token). One line of `text_path` (e.g. a .wrd
    file) is one example, tokenised with the SentencePiece model `sp_model` (path or processor).
    Lines longer than the largest bucket are filtered; empty / non-UTF-8 lines skipped.

    With `infill`, batches add the BART-noised encoder input of every line (`text_lib.
    infill_noise`, mask token `text_lib.mask_token_id(sp)`, random replacements among
    `text_lib.ordinary_ids(sp)`, </s> never masked): "text_source" int32 [B, L] and
    "text_source_mask" bool [B, L]; "text" stays the original, the decoder's target. The noise
    of a line is a function of (seed, epoch, line), so resuming repeats it exactly."""
    sp = text_lib.load_sp(sp_model) if isinstance(sp_model, (str, os.PathLike)) else sp_model
    stats = PipelineStats(strict)
    path = Path(text_path)
    if not path.is_file():
        raise DataError(f"text file not found: {path}")
    tokens, lengths = [], []
    for j, raw in enumerate(_read_lines(path)):
        where = f"{path}:{j + 1}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            stats.problem("non_utf8_transcript", where)
            continue
        if not line.strip():
            stats.problem("empty_transcript", where)
            continue
        ids = text_lib.sp_encode(sp, line.strip(), add_eos=add_eos)
        if len(ids) > bucket_boundaries[-1]:
            stats.problem("too_long", where, f"{len(ids)} tokens", filtered=True)
            continue
        tokens.append(np.asarray(ids, np.int32))
        lengths.append(len(ids))
    if not tokens:
        raise DataError(f"{path}: no usable lines")
    lengths = np.asarray(lengths, np.int64)
    noise = {
        "mask_id": text_lib.mask_token_id(sp),
        "vocab_size": text_lib.text_vocab_size(sp),
        "mask_ratio": mask_ratio,
        "poisson_lambda": poisson_lambda,
        "random_ratio": random_ratio,
        "eos_id": sp.eos_id() if add_eos else None,
        "random_ids": text_lib.ordinary_ids(sp),
    }
    pad_id = text_lib.pad_token_id(sp)
    size = lambda bl: _batch_rule(max_tokens_per_batch, batch_multiple, bl)
    _local_rows(size(bucket_boundaries[0]), process_index, process_count)
    start = _start(start_position)

    def plan(epoch):
        order = (
            np.random.default_rng([seed, epoch]).permutation(len(lengths))
            if shuffle
            else np.arange(len(lengths))
        ).astype(np.int64)
        batches, dropped = plan_batches(lengths, order, bucket_boundaries, size, pad_last=False)
        if not batches:
            raise DataError(f"{path}: {len(lengths)} lines do not fill one batch")
        stats.dropped_remainder += dropped
        if shuffle:
            perm = np.random.default_rng([seed, epoch, 1]).permutation(len(batches))
            batches = [batches[i] for i in perm]
        return batches

    def batches():
        for epoch in itertools.count(start[0]):
            p = plan(epoch)
            for i in range(start[1] if epoch == start[0] else 0, len(p)):
                rows = _local_rows(len(p[i].index), process_index, process_count)
                index = p[i].index[rows]
                text = np.full((len(index), p[i].bucket_len), pad_id, np.int32)
                for r, u in enumerate(index):
                    text[r, : lengths[u]] = tokens[u]
                mask = np.arange(p[i].bucket_len)[None] < lengths[index][:, None]
                batch = {"text": text, "text_mask": mask, "weight": p[i].weight[rows].copy()}
                if infill:
                    batch.update(
                        _infill_batch(tokens, index, p[i].bucket_len, seed, epoch, noise, pad_id)
                    )
                stats.batches += 1
                stats.examples += len(index)
                yield batch, {"epoch": epoch, "batch": i + 1}

    return BatchIterator(batches(), {"epoch": start[0], "batch": start[1]}, stats)
