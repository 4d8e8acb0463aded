"""The tf.data stage of manifest sources: decode the host-local rows of planned batches in
parallel threads, prefetch, then repair and count bad rows in the consuming thread.

tf.data only runs the decoding (a numpy function per batch: soundfile reads just the cropped
window, data/audio.py) in parallel and prefetches; what is decoded was planned before
(data/batching.py). A row that fails at decode time stays in its batch (shapes and host
agreement depend on it) as a weight-0 copy of a good row of the same batch (`weight` 0, and
for speech batches `labelled` 0 and phones cleared), so models that weight their losses by
`weight` never learn from it.

A decoder (`SpeechDecoder` here, data/task_batches.py's `TaskDecoder`) is a callable
`(epoch, bucket_len, index, weight) -> (status int32 [b], cropped bool [b], *arrays)` with
`outputs` (key, dtype, row shape with None where the bucket sets the size) naming the arrays,
`cleared` (values a repaired row gets), `details` (decode problems by example) and `where(i)`
(the file and line of example i, for problem reports).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from unispeech_jax.data import augment as augment_lib
from unispeech_jax.data import features
from unispeech_jax.data.audio import normalize, read_audio
from unispeech_jax.data.batching import (
    AUGMENT_KEY,
    account,
    crop_offsets,
    key_hash,
    local_rows,
)
from unispeech_jax.data.data_config import DataConfig
from unispeech_jax.data.manifest import Split
from unispeech_jax.data.stats import SKIP_REASONS, PipelineStats

# Status of a decoded row: 0 = usable, else 1 + the index of its skip reason.
DECODE_CODES = {r: i + 1 for i, r in enumerate(SKIP_REASONS)}
_CODE_REASONS = {i: r for r, i in DECODE_CODES.items()}


def load_tf():
    """tensorflow, kept off every accelerator (they belong to JAX)."""
    import tensorflow as tf

    for kind in ("GPU", "TPU"):
        try:
            tf.config.set_visible_devices([], kind)
        except (RuntimeError, ValueError):
            pass
    return tf


class Decoder(Protocol):
    """What `planned_iterator` needs of a decoder (see the module docstring)."""

    outputs: list[tuple[str, Any, tuple]]
    cleared: dict[str, Any]
    details: dict[int, str]

    def where(self, i: int) -> str: ...

    def __call__(self, epoch, bucket_len, index, weight) -> tuple: ...


def read_input(
    path: str,
    n: int,
    offset: int,
    take: int,
    cfg: DataConfig,
    augment: augment_lib.Augment | None,
    seed: int,
    epoch: int,
    i: int,
    bucket_len: int,
) -> tuple[np.ndarray | None, str | None, str]:
    """Samples [offset, offset + take) of example i's audio (n samples), augmented by the
    draws of (seed, epoch, i) when `augment` is active -> (float32 [<= bucket_len] or None,
    skip reason or None, detail)."""
    x, reason, detail = read_audio(path, n, offset, take, cfg.sample_rate)
    if reason is None and augment is not None and augment.active:
        rng = np.random.default_rng(int(key_hash(seed, AUGMENT_KEY, epoch, i)))
        x = augment_lib.augment(x, augment, rng, cfg.sample_rate, bucket_len)
    return x, reason, detail


BABBLE_RESERVOIR = 16  # training utterances the babble noise is made of


def with_babble(
    augment: augment_lib.Augment, paths: list[str], lengths: np.ndarray, cfg: DataConfig, seed: int
) -> augment_lib.Augment:
    """`augment` with its babble reservoir: BABBLE_RESERVOIR training utterances (of `paths`
    [n], `lengths` int64 [n] samples) picked by `seed`, each its first `max_sample_len` samples
    at unit std (unreadable ones left out). Also checks the noise and RIR folders, so that a
    bad one stops the run before tf.data starts. Unchanged when no noise is asked for."""
    augment.folders()
    if augment.noise_prob == 0 or not len(paths):
        return augment
    rng = np.random.default_rng(int(key_hash(seed, AUGMENT_KEY, len(paths))))
    picks = rng.choice(len(paths), min(BABBLE_RESERVOIR, len(paths)), replace=False)
    talkers = []
    for i in sorted(picks):
        n = int(lengths[i])
        x, reason, _ = read_audio(paths[i], n, 0, min(n, cfg.max_sample_len), cfg.sample_rate)
        if reason is None and np.std(x) > 0:
            talkers.append(x / np.std(x))
    return dataclasses.replace(augment, babble=tuple(talkers))


class SpeechDecoder:
    """Decodes the host-local rows of one planned speech batch (runs in tf.data threads)."""

    def __init__(
        self,
        split: Split,
        cfg: DataConfig,
        seed: int,
        crop: bool,
        augment: augment_lib.Augment | None,
    ):
        self.split, self.cfg, self.seed, self.crop = split, cfg, seed, crop
        self.augment = augment
        self.details: dict[int, str] = {}
        self.outputs = [(key, dtype, static) for key, dtype, static, _ in speech_keys(cfg)]
        self.cleared = {"phones": 0, "phones_mask": False, "labelled": 0.0}
        self.where = split.where

    def __call__(self, epoch, bucket_len, index, weight):
        """Rows `index` (int64 [b]) of one batch padded to `bucket_len` -> status int32 [b]
        (0 or a `DECODE_CODES` reason), cropped bool [b], audio float32 [b, bucket_len],
        audio_mask bool [b, bucket_len], phones int32 [b, max_label_len], phones_mask bool
        [b, max_label_len], labelled float32 [b], weight float32 [b], then the `_extra_keys`."""
        split, cfg = self.split, self.cfg
        b, bucket_len, L = len(index), int(bucket_len), cfg.max_label_len
        extra = {
            key: np.full((b, *shape(bucket_len)), fill, dtype)
            for key, dtype, _, shape, fill in _extra_keys(cfg)
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
            x, reason, detail = read_input(
                split.paths[i], n, offset, take, cfg, self.augment, self.seed, epoch, i, bucket_len
            )
            if reason is not None:
                status[r] = DECODE_CODES[reason]
                self.details[int(i)] = detail
                continue
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
            status,
            cropped,
            audio,
            audio_mask,
            phones,
            phones_mask,
            labelled,
            weight,
            *extra.values(),
        )

    def _offset(self, epoch: int, i: int, n: int, take: int) -> int:
        """Crop start; a multiple of the conv hop when km labels come along, so that the
        crop's frames are frames of the whole utterance."""
        if self.split.km_offsets is None:
            return int(crop_offsets(self.seed, epoch, i, n, take))
        starts = (n - take) // features.CONV_HOP + 1
        return int(crop_offsets(self.seed, epoch, i, starts, 1)) * features.CONV_HOP


def speech_keys(cfg: DataConfig) -> list[tuple[str, Any, tuple, Callable[[int], tuple]]]:
    """Every key of `cfg`'s speech batches: (key, dtype, static row shape, row shape given
    the bucket length), in `SpeechDecoder` output order."""
    L = cfg.max_label_len
    base = [
        ("audio", np.float32, (None,), lambda s: (s,)),
        ("audio_mask", bool, (None,), lambda s: (s,)),
        ("phones", np.int32, (L,), lambda s: (L,)),
        ("phones_mask", bool, (L,), lambda s: (L,)),
        ("labelled", np.float32, (), lambda s: ()),
        ("weight", np.float32, (), lambda s: ()),
    ]
    return base + [(key, dtype, static, shape) for key, dtype, static, shape, _ in _extra_keys(cfg)]


def speech_batch_shapes(cfg: DataConfig, rows: int, bucket_len: int) -> dict[str, tuple]:
    """{key: (shape, dtype)} of a speech batch of `rows` rows in the bucket `bucket_len`."""
    return {
        key: ((rows, *shape(int(bucket_len))), np.dtype(dtype))
        for key, dtype, _, shape in speech_keys(cfg)
    }


def _extra_keys(cfg: DataConfig) -> list[tuple[str, Any, tuple, Callable[[int], tuple], Any]]:
    """The SpeechT5 keys `cfg` asks for: (key, dtype, static row shape, row shape given the
    bucket length, fill value) in decoder output order."""
    keys = []
    if cfg.km_labels:
        frames = lambda s: (features.conv_frames(s),)
        keys += [("km", np.int32, (None,), frames, 0), ("km_mask", bool, (None,), frames, False)]
    if cfg.log_mel:
        mel = lambda s: (features.mel_frames(s), features.MEL_BINS)
        keys += [
            ("mel", np.float32, (None, features.MEL_BINS), mel, 0.0),
            ("mel_mask", bool, (None,), lambda s: mel(s)[:1], False),
        ]
    if cfg.speakers:
        keys += [("speaker", np.int32, (), lambda s: (), -1)]
    return keys


def _repair(batch: dict, bad: np.ndarray, cleared: dict) -> None:
    """Turns rows `bad` into weight-0 copies of a good row (as decoded, with every mask set,
    if there is none), then gives them the `cleared` values."""
    good = np.flatnonzero(~bad & (batch["weight"] > 0))
    if not len(good):
        good = np.flatnonzero(~bad)
    for r in np.flatnonzero(bad):
        for k in batch:
            if len(good):
                batch[k][r] = batch[k][good[0]]
            elif k.endswith("_mask"):  # nothing decodable on this host: a blank, unmasked row
                batch[k][r] = True
        for k, value in cleared.items():
            batch[k][r] = value
        batch["weight"][r] = 0.0


def planned_iterator(
    decoder: Decoder,
    cfg: DataConfig,
    plans: Callable[[int], list],
    *,
    process_index: int,
    process_count: int,
    start: tuple[int, int],
    stats: PipelineStats,
    one_pass: bool,
):
    """tf.data over planned batches: decode in parallel, prefetch; repair/count in Python.

    `plans(epoch)` gives an epoch's PlannedBatch list; yields (batch dict of host-local numpy
    arrays named by the decoder's `outputs`, position {"epoch", "batch"} after it) from
    `start` = (epoch, batch), one epoch if `one_pass`, else forever."""
    tf = load_tf()
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

    keys = [key for key, _, _ in decoder.outputs]

    def decode(epoch, bucket_len, index, weight):
        out = tf.numpy_function(
            decoder,
            [epoch, bucket_len, index, weight],
            [tf.int32, tf.bool] + [tf.as_dtype(dtype) for _, dtype, _ in decoder.outputs],
            stateful=False,
        )
        shapes = [[None], [None]] + [[None, *shape] for _, _, shape in decoder.outputs]
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
            status, cropped = out[0], out[1]
            batch = dict(zip(keys, out[2:]))
            bad = status != 0
            for r in np.flatnonzero(bad):
                u = int(index[r])
                stats.problem(
                    _CODE_REASONS[int(status[r])], decoder.where(u), decoder.details.get(u, "")
                )
            if bad.any():
                batch = {k: v.copy() for k, v in batch.items()}  # tf's arrays are read-only
                _repair(batch, bad, decoder.cleared)
            stats.cropped += int(cropped[batch["weight"] > 0].sum())
            account(stats, batch)
            yield batch, {"epoch": int(epoch), "batch": int(i) + 1}

    return batches()
