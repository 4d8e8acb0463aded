"""CTC best-path decoding on host.

Shapes: B utterances, T frames, C classes (blank included).
"""

from __future__ import annotations

import numpy as np


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
