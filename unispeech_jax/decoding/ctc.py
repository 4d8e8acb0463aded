"""CTC decoding: best path on host, and a jitted, batched CTC prefix beam search.

Shapes: B utterances, T frames, C classes (blank included), K beam.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from unispeech_jax.decoding import beam as beam_lib
from unispeech_jax.decoding import ctc_prefix


def collapse_ctc(ids, blank_id: int = 0) -> list[int]:
    """CTC collapse of one frame-level id sequence: merge repeats, then drop blanks.

    ids: [T] ints (already restricted to valid frames).
    """
    ids = np.asarray(ids)
    if ids.size == 0:
        return []
    first_of_run = np.concatenate([[True], ids[1:] != ids[:-1]])
    return [int(i) for i in ids[first_of_run & (ids != blank_id)]]


def ctc_greedy(logits, valid, blank_id: int = 0) -> list[list[int]]:
    """Best-path CTC decoding.

    logits: [B, T, C] (numpy or jax; log-probs or raw scores, argmax is the same);
    valid: [B, T] bool, True on real frames. Returns one list of label ids per example.
    Runs on host: decoded lengths vary, so the result is a ragged Python list.
    """
    best = np.asarray(logits).argmax(axis=-1)
    valid = np.asarray(valid).astype(bool)
    return [collapse_ctc(row[keep], blank_id) for row, keep in zip(best, valid)]


def prefix_beam_search(
    log_probs, lengths, *, beam: int, blank_id: int = 0, max_length: int | None = None
) -> dict:
    """CTC prefix beam search, jitted and batched: label-synchronous beam search whose only
    score is the CTC prefix score (`ctc_prefix`), as ESPnet decodes CTC alone. Each step
    extends every hypothesis by every label; the blank candidate ends a hypothesis with its
    full CTC log-likelihood log P(y | x).

    log_probs float [B,T,C] (log-softmax), lengths int [B] valid frames. max_length: most
    labels (default T). Returns dict tokens int32 [B,K,max_length] (blank_id after the
    labels), lengths int32 [B,K], scores float32 [B,K] (log P(y | x), best first; −inf: no
    hypothesis).
    """
    batch, frames, classes = log_probs.shape
    uniform = lambda tokens, state: (jnp.zeros((tokens.shape[0], classes), jnp.float32), state)
    return beam_lib.beam_search(
        uniform,
        (),
        jnp.full((batch,), blank_id, jnp.int32),
        beam=beam,
        max_length=max_length or frames,
        eos_id=blank_id,
        pad_id=blank_id,
        ctc=ctc_prefix.init(log_probs, lengths, blank_id),
        ctc_weight=1.0,
        pre_beam=classes,
    )
