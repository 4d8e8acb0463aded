"""TFDS sources (`data.source='tfds'`): a streaming iterator of bucketed batches.

TFDS sources have no lengths up front, so they stream: decode every example, group by bucket
(`group_by_window`), batch. A rejected (skipped / filtered) example is not dropped inside
tf.data: it comes out as a batch of its own at its place in the stream and is counted when the
consumer reaches it, so the counts after N batches do not depend on how far the prefetching
threads ran ahead. The position counts the elements of the epoch's stream consumed (batches,
rejected examples, dropped partial batches), and resuming replays the epoch up to it (exact,
but costs reading that part again).

Multi-host training: each host reads only its contiguous share of the split (examples
[h*N/n, (h+1)*N/n)) and batches it into its per-host share of each global batch size, one
queue per bucket. Before each batch the hosts exchange which buckets they have a batch ready
in (`agree`, an all-gather of a few integers) and all take one from the lowest bucket ready
on every host, so every host's batch has the same shape; a host with none ready reads on.
An epoch ends when no bucket can be ready on every host again (the rest is counted as
dropped). The position then counts the global batches of the epoch, so a run resumes with
the same number of processes. Evaluation is one pass: every host reads the whole (small)
split and keeps its rows of each batch.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from unispeech_jax.data import augment as augment_lib
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.audio import normalize
from unispeech_jax.data.batching import (
    AUGMENT_KEY,
    BATCH_KEYS,
    BatchIterator,
    account,
    batch_size_for,
    crop_offsets,
    key_hash,
    key_uniform,
    local_rows,
)
from unispeech_jax.data.data_config import DataConfig, augment_of
from unispeech_jax.data.decode import load_tf
from unispeech_jax.data.sources import vocab
from unispeech_jax.data.stats import FILTER_REASONS, SKIP_REASONS, DataError, PipelineStats
from unispeech_jax.data.text import letters

_TEMPDIR_SWAP = threading.Lock()  # tempfile.tempdir is process-wide: one swap at a time


@contextlib.contextmanager
def tempfiles_removed():
    """Runs the block with tempfile's folder a new one, removed after it. A TFDS builder of a
    dataset that is not prepared in its data_dir makes an empty `mkdtemp('tfds')` for the
    metadata it would fetch from GCS (which TFDS has off) and never removes it: without this,
    every such builder leaves a /tmp/tmp*tfds behind."""
    with _TEMPDIR_SWAP, tempfile.TemporaryDirectory() as folder:
        saved, tempfile.tempdir = tempfile.tempdir, folder
        try:
            yield
        finally:
            tempfile.tempdir = saved


def builder_of(cfg: DataConfig):
    """The TFDS builder of `data.tfds_name` in `data.tfds_data_dir`; DataError if unknown."""
    import tensorflow_datasets as tfds

    if not cfg.tfds_name:
        raise DataError("data.source='tfds' needs data.tfds_name")
    try:
        with tempfiles_removed():
            return tfds.builder(cfg.tfds_name, data_dir=cfg.tfds_data_dir or None)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(f"data.tfds_name={cfg.tfds_name!r}: {str(e).splitlines()[0]}") from None


def write_letter_vocab(cfg: DataConfig, path: Path) -> Path:
    """The letters of the transcripts of `data.train_split` (`letters`: upper case, `|` ends
    a word) as a fairseq dict at `path`, most frequent first. Reads the text feature only
    (the audio is not decoded); written beside and renamed into place."""
    import tensorflow_datasets as tfds

    decoders = tfds.decode.PartialDecoding({cfg.tfds_text_key: True})
    ds = builder_of(cfg).as_dataset(split=cfg.train_split, shuffle_files=False, decoders=decoders)
    counts = collections.Counter()
    for text in ds.map(lambda ex: ex[cfg.tfds_text_key]).as_numpy_iterator():
        counts.update(letters(text.decode("utf-8", "replace")).split())
    if not counts:
        raise DataError(
            f"tfds {cfg.tfds_name}/{cfg.train_split}: no transcripts to list letters of"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(
            f"{s} {n}\n" for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        )
    os.replace(tmp, path)
    return path


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

    def __init__(self, cfg: DataConfig, vocabulary, seed: int, train: bool):
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
            not self.train or key_uniform(self.seed, 0x1AB, index) < cfg.labelled_fraction
        )
        if self.vocab is not None:
            try:
                line = transcript.decode("utf-8")
            except UnicodeDecodeError:
                return "non_utf8_transcript", ""
            if cfg.labels == "ltr":
                line = letters(line)
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
            rng = np.random.default_rng(int(key_hash(self.seed, AUGMENT_KEY, epoch, index)))
            x = augment_lib.augment(x, self.augment, rng, cfg.sample_rate, cfg.max_sample_len)
        if cfg.normalize:
            x = normalize(x)
        return x, ids, labelled, cropped


def tfds_iterator(
    cfg: DataConfig,
    split: str,
    *,
    train: bool,
    seed: int,
    process_index: int,
    process_count: int,
    start: tuple[int, int],
    stats: PipelineStats,
    agree: Callable[[np.ndarray], np.ndarray] | None = None,
) -> BatchIterator:
    """Host-local batches of TFDS `split` (module docstring): with `train`, infinite, filtered,
    cropped and shuffled from epoch/element `start`; else one pass, padded with weight-0 rows.

    agree: [k] int32 of this host -> [process_count, k] of all hosts, in process order
    (default: jax's process_allgather); multi-host training only."""
    tf = load_tf()
    builder = builder_of(cfg)
    sharded = train and process_count > 1
    shard, offset = split, 0
    if sharded:
        shard, offset = host_split(builder, split, process_index, process_count)
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
        if sharded:  # this host's share of the global batch
            size = size // process_count
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
        ds = builder.as_dataset(split=shard, shuffle_files=False)
        ds = ds.map(lambda ex: (ex[cfg.tfds_audio_key], ex[cfg.tfds_text_key]))
        ds = ds.enumerate(start=offset)  # indices in the whole split: draws do not depend on n
        if train and cfg.shuffle:
            ds = ds.shuffle(
                cfg.shuffle_buffer,
                seed=int(key_hash(seed, epoch) >> np.uint64(33)),
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

    def count_rejected(batch) -> None:
        """Counts a rejected example (a window of one) in `stats`."""
        reason = _TFDS_REASONS[int(batch["status"][0])]
        stats.problem(
            reason,
            f"{where}[{int(batch['index'][0])}]",
            batch["detail"][0].decode("utf-8"),
            filtered=reason in FILTER_REASONS,
        )

    def keep(batch, rows: slice) -> dict:
        """This host's `rows` of a full batch, its crops and rows counted."""
        cropped = batch["cropped"][rows]
        stats.cropped += int((cropped > 0).sum())
        stats.labelled_cropped += int((cropped == 2).sum())
        batch = {k: batch[k][rows] for k in BATCH_KEYS}
        account(stats, batch)
        return batch

    def batches():
        for epoch in range(1) if not train else itertools.count(start[0]):
            skip = start[1] if epoch == start[0] else 0
            consumed, yielded = skip, 0  # consumed: elements of the epoch's dataset
            for batch in epoch_dataset(epoch).skip(skip).as_numpy_iterator():
                consumed += 1
                if batch["status"][0]:
                    count_rejected(batch)
                    continue
                size = batch_size_for(cfg, batch["audio"].shape[1])
                rows = batch["audio"].shape[0]
                if rows < size:
                    if train:
                        stats.dropped_remainder += rows
                        continue
                    batch = _padded(batch, size)
                yielded += 1
                local = local_rows(size, process_index, process_count)
                yield keep(batch, local), {"epoch": epoch, "batch": consumed}
            if train and yielded == 0 and skip == 0:
                raise DataError(f"tfds {cfg.tfds_name}/{split}: no usable examples")

    def agreed_batches():
        """Multi-host training (module docstring): this host's share of each global batch."""
        exchange = agree or _allgather
        for epoch in itertools.count(start[0]):
            skip = start[1] if epoch == start[0] else 0
            emitted = 0
            queues = [collections.deque() for _ in boundaries]  # one per bucket
            stream = epoch_dataset(epoch).as_numpy_iterator()
            exhausted = False
            while True:
                mine = [len(q) > 0 for q in queues] + [exhausted]
                votes = np.asarray(exchange(np.array(mine, np.int32))).astype(bool)
                ready = np.flatnonzero(votes[:, :-1].all(0))
                if ready.size:
                    batch = queues[ready[0]].popleft()
                    emitted += 1
                    if emitted > skip:  # the first `skip` were yielded before the resume
                        yield keep(batch, slice(None)), {"epoch": epoch, "batch": emitted}
                    continue
                if not (votes[:, :-1] | ~votes[:, -1:]).all(0).any():
                    break  # no bucket can be ready on every host again
                if exhausted:
                    continue
                batch = next(stream, None)
                counting = emitted >= skip  # what was read before the resume was counted then
                if batch is None:
                    exhausted = True
                elif batch["status"][0]:
                    if counting:
                        count_rejected(batch)
                else:
                    bucket_len = batch["audio"].shape[1]
                    if len(batch["audio"]) == batch_size_for(cfg, bucket_len) // process_count:
                        queues[boundaries.index(bucket_len)].append(batch)
                    elif counting:
                        stats.dropped_remainder += len(batch["audio"])
            stats.dropped_remainder += sum(len(b["audio"]) for q in queues for b in q)
            if emitted == 0:
                raise DataError(f"tfds {cfg.tfds_name}/{split}: no usable examples")

    return BatchIterator(
        agreed_batches() if sharded else batches(),
        {"epoch": start[0], "batch": start[1]},
        stats,
    )


def host_split(builder, split: str, process_index: int, process_count: int) -> tuple[str, int]:
    """(TFDS split string, first example index) of this host's contiguous share of `split`."""
    total = builder.info.splits[split].num_examples
    lo = process_index * total // process_count
    hi = (process_index + 1) * total // process_count
    return f"{split}[{lo}:{hi}]", lo


def _allgather(mine: np.ndarray) -> np.ndarray:
    """[k] of this process -> [process_count, k] of all, in process order."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, len(mine))


def _padded(batch: dict, size: int) -> dict:
    """An eval bucket's last batch of `rows` < `size` rows filled with weight-0 copies of row 0."""
    rows = len(batch["audio"])
    take = np.concatenate([np.arange(rows), np.zeros(size - rows, int)])
    batch = {k: v[take] for k, v in batch.items()}
    batch["weight"][rows:] = 0.0
    batch["labelled"][rows:] = 0.0
    batch["phones"][rows:] = 0
    batch["phones_mask"][rows:] = False
    batch["cropped"][rows:] = 0
    return batch
