"""The tf.data stage of manifest sources: decode the host-local rows of planned batches in
parallel threads, prefetch, then repair and count bad rows in the consuming thread.

tf.data only runs the decoding (a numpy function per batch: soundfile reads just the cropped
window, data/audio.py) in parallel and prefetches; what is decoded was planned before
(data/batching.py). A row that fails at decode time stays in its batch (shapes and host
agreement depend on it) as a weight-0 copy of a good row of the same batch: `weight` 0,
`labelled` 0, phones zeroed, so models that weight their losses by `weight` never learn from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from unispeech_jax.data import augment as augment_lib
from unispeech_jax.data import features
from unispeech_jax.data.audio import normalize, read_audio
from unispeech_jax.data.batching import (
    AUGMENT_KEY,
    BATCH_KEYS,
    account,
    crop_offsets,
    key_hash,
    local_rows,
)
from unispeech_jax.data.data_config import DataConfig
from unispeech_jax.data.manifest import Split
from unispeech_jax.data.stats import SKIP_REASONS, PipelineStats

# Status of a decoded row: 0 = usable, else 1 + the index of its skip reason.
_DECODE_CODES = {r: i + 1 for i, r in enumerate(SKIP_REASONS)}
_CODE_REASONS = {i: r for r, i in _DECODE_CODES.items()}


def load_tf():
    """tensorflow, kept off every accelerator (they belong to JAX)."""
    import tensorflow as tf

    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):
            pass
    return tf


class _ManifestDecoder:
    """Decodes the host-local rows of one planned batch (runs in tf.data threads)."""

    def __init__(
        self,
        split: Split,
        cfg: DataConfig,
        seed: int,
        crop: bool,
        augment: augment_lib.Augment | None,
    ):
        self.split, self.cfg, self.seed, self.crop = split, cfg, seed, crop
        self.augment = augment if augment is not None and augment.active else None
        self.details: dict[int, str] = {}

    def __call__(self, epoch, bucket_len, index, weight):
        """Rows `index` (int64 [b]) of one batch padded to `bucket_len` -> audio float32
        [b, bucket_len], audio_mask bool [b, bucket_len], phones int32 [b, max_label_len],
        phones_mask bool [b, max_label_len], labelled float32 [b], weight float32 [b], status
        int32 [b] (0 or a `_DECODE_CODES` reason), cropped bool [b], then the `_extra_keys`."""
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
            x, reason, detail = read_audio(split.paths[i], n, offset, take, cfg.sample_rate)
            if reason is not None:
                status[r] = _DECODE_CODES[reason]
                self.details[int(i)] = detail
                continue
            if self.augment is not None:
                rng = np.random.default_rng(int(key_hash(self.seed, AUGMENT_KEY, epoch, i)))
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
            audio[r, : len(x)] = normalize(x) if cfg.normalize else x
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


def _extra_keys(cfg: DataConfig) -> list[tuple[str, Any, Callable[[int], tuple], Any]]:
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
    copied = ["audio", "audio_mask", *(k for k in batch if k not in BATCH_KEYS)]
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


def planned_iterator(
    split: Split,
    cfg: DataConfig,
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
    """tf.data over planned batches: decode in parallel, prefetch; repair/count in Python.

    `plans(epoch)` gives an epoch's PlannedBatch list; yields (batch dict of host-local numpy
    arrays, position {"epoch", "batch"} after it) from `start` = (epoch, batch), one epoch if
    `one_pass`, else forever."""
    tf = load_tf()
    decoder = _ManifestDecoder(split, cfg, seed, crop, augment)
    first = plans(start[0])

    def plan_arrays(epoch):
        """The host-local plan of one epoch as arrays (rows padded to the largest batch)."""
        plan = first if epoch == start[0] else plans(int(epoch))
        n, local = len(plan), max(len(p.index) for p in plan) // process_count
        index, weight = np.zeros((n, local), np.int64), np.zeros((n, local), np.float32)
        size, bucket = np.zeros(n, np.int64), np.zeros(n, np.int64)
        for i, p in enumerate(plan):
            rows = local_rows(len(p.index), process_index, process_count)
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
            batch = dict(zip(BATCH_KEYS, out[:6]))
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
            account(stats, batch)
            yield batch, {"epoch": int(epoch), "batch": int(i) + 1}

    return batches()
