"""Batch planning: bucketing, batch sizes, crop offsets, per-host rows, the iterator type.

Manifests list every utterance's length, so the batches of an epoch are planned in Python
before any audio is read (`epoch_plan`):

  1. shuffle the usable utterances with a generator seeded by (seed, epoch);
  2. put each into the smallest bucket >= its (cropped) length;
  3. cut each bucket into GLOBAL batches of `batch_size_for(bucket)`; the leftovers of a bucket
     join the next bigger bucket (they fit), so only the leftovers of the largest bucket are
     dropped (< one batch per epoch, different utterances every epoch);
  4. shuffle the batch order with (seed, epoch).

Host `i` of `n` decodes rows [i*B/n, (i+1)*B/n) of every global batch (`local_rows`), so
hosts read disjoint data that covers the epoch and agree on every batch's shape. The position
of an iterator is {"epoch", "batch"}: resuming rebuilds the plan of that epoch and starts at
that batch, which costs nothing and gives bit-identical batches (crop offsets are a hash of
(seed, epoch, utterance), `key_hash`, not drawn from a stateful generator).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from unispeech_jax.data.data_config import resolve
from unispeech_jax.data.stats import PipelineStats

# The keys of every speech batch (docs/ARCHITECTURE.md, "Batches"); SpeechT5 adds more.
BATCH_KEYS = ("audio", "audio_mask", "phones", "phones_mask", "labelled", "weight")
AUGMENT_KEY = 0xA06  # keeps the augmentation draws apart from the crop and label draws


def batch_size_for(data_cfg, bucket_len: int) -> int:
    """GLOBAL batch size of a bucket: max(m, floor(max_samples_per_batch / bucket_len) rounded
    down to a multiple of m), m = batch_multiple."""
    cfg = resolve(data_cfg)
    return batch_rule(cfg.max_samples_per_batch, cfg.batch_multiple, bucket_len)


def batch_rule(budget: int, multiple: int, length: int) -> int:
    """Rows of a batch of `length`-long rows within `budget`: a multiple of `multiple`, >= it."""
    return max(multiple, (budget // int(length)) // multiple * multiple)


def key_hash(*keys) -> np.ndarray:
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


def key_uniform(*keys) -> np.ndarray:
    """Stateless U[0, 1) draws (float64, broadcast shape) keyed by integer arrays."""
    return (key_hash(*keys) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def crop_offsets(seed: int, epoch: int, index, length, take) -> np.ndarray:
    """Start of the crop window of utterance `index` in `epoch`: uniform in [0, length-take]."""
    span = np.asarray(length, np.int64) - np.asarray(take, np.int64) + 1
    return np.minimum((key_uniform(seed, epoch, index) * span).astype(np.int64), span - 1)


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
    """One global batch: the bucket it pads to and its rows."""

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


def epoch_plan(
    lengths: np.ndarray,
    boundaries: Sequence[int],
    batch_size: Callable[[int], int],
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
) -> tuple[list, int]:
    """The batches of one epoch (steps 1-4 of the module docstring) over int [n] `lengths`:
    (PlannedBatch list, number of leftovers dropped)."""
    n = len(lengths)
    if shuffle:
        order = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    batches, dropped = plan_batches(lengths, order, boundaries, batch_size, pad_last=False)
    if shuffle:
        perm = np.random.default_rng([seed, epoch, 1]).permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches, dropped


def local_rows(size: int, process_index: int, process_count: int) -> slice:
    """This host's rows of a global batch of `size` rows."""
    if size % process_count:
        raise ValueError(
            f"global batch size {size} is not divisible by process_count "
            f"{process_count}; make data.batch_multiple a multiple of it"
        )
    b = size // process_count
    return slice(process_index * b, (process_index + 1) * b)


def parse_position(position) -> tuple[int, int]:
    """An iterator position (0 / None or {"epoch", "batch"}) -> (epoch, batch)."""
    if not position:
        return 0, 0
    if isinstance(position, Mapping):
        return int(position.get("epoch", 0)), int(position.get("batch", 0))
    raise ValueError(f"bad start_position {position!r}")


def account(stats: PipelineStats, batch: dict) -> None:
    """Counts a yielded batch (its weight-1 rows and, with audio, their samples) in `stats`."""
    real = batch["weight"] > 0
    stats.batches += 1
    stats.examples += int(real.sum())
    if "audio" in batch:
        stats.audio_samples += int(batch["audio_mask"][real].sum())
        stats.padded_samples += int(real.sum()) * batch["audio"].shape[1]


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
