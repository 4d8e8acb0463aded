"""Text-only batches for SpeechT5 (`make_text_iter`): lines of a text file, SentencePiece
tokens, bucketed by token length, optionally with the BART-noised encoder input of text
infilling."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unispeech_jax.data import text as text_lib
from unispeech_jax.data.batching import (
    BatchIterator,
    batch_rule,
    epoch_plan,
    local_rows,
    parse_position,
)
from unispeech_jax.data.manifest import read_lines, transcript
from unispeech_jax.data.stats import DataError, PipelineStats


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
    for j, raw in enumerate(read_lines(path)):
        where = f"{path}:{j + 1}"
        line = transcript(raw, where, stats)
        if line is None:
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
    size = lambda bl: batch_rule(max_tokens_per_batch, batch_multiple, bl)
    local_rows(size(bucket_boundaries[0]), process_index, process_count)
    start = parse_position(start_position)

    def plan(epoch):
        batches, dropped = epoch_plan(
            lengths, bucket_boundaries, size, seed=seed, epoch=epoch, shuffle=shuffle
        )
        if not batches:
            raise DataError(f"{path}: {len(lengths)} lines do not fill one batch")
        stats.dropped_remainder += dropped
        return batches

    def batches():
        for epoch in itertools.count(start[0]):
            p = plan(epoch)
            for i in range(start[1] if epoch == start[0] else 0, len(p)):
                rows = local_rows(len(p[i].index), process_index, process_count)
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


def text_batch_shapes(rows: int, width: int, infill: bool) -> dict[str, tuple]:
    """{key: (shape, dtype)} of a `make_text_iter` batch of `rows` lines in the bucket `width`."""
    shapes = {
        "text": ((rows, width), np.dtype(np.int32)),
        "text_mask": ((rows, width), np.dtype(bool)),
        "weight": ((rows,), np.dtype(np.float32)),
    }
    if infill:
        shapes["text_source"] = shapes["text"]
        shapes["text_source_mask"] = shapes["text_mask"]
    return shapes


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
