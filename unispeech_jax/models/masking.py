"""Span masking (time and channel) and distractor sampling, jittable with static shapes.

Everything here takes an explicit PRNG key and works on right-padded batches: ``valid`` is
True on the first ``n_valid`` frames of each row. No Python loop runs over the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _max_spans(size: int, prob: float, length: int, min_masks: int) -> int:
    """Static upper bound on the number of spans of a row of ``size`` frames.

    ``floor(prob * n / length + u)`` with ``u < 1`` is at most ``int(prob * size / length) + 1``.
    The bound is also capped by the number of start positions, as spans never repeat a start.
    """
    bound = max(min_masks, int(prob * size / length) + 1)
    return max(0, min(bound, size - length + 1))


def num_spans(rng, n_valid, prob: float, length: int, min_masks: int, max_spans: int):
    """Number of spans per row: ``max(min_masks, int(prob * n / length + u))``, u ~ U[0, 1).

    The fairseq/HF rule, with one ``u`` per row (fairseq; HF shares one per batch, which has
    the same expectation). Capped by the ``n - length + 1`` available starts, so a row shorter
    than ``length`` gets no span at all (as in HF), and by the static ``max_spans``.

    n_valid: [B] int. Returns [B] int32.
    """
    u = jax.random.uniform(rng, n_valid.shape)
    count = jnp.floor(prob * n_valid.astype(jnp.float32) / length + u).astype(jnp.int32)
    count = jnp.maximum(count, min_masks)
    starts_available = jnp.maximum(n_valid - length + 1, 0)
    return jnp.minimum(jnp.minimum(count, starts_available), max_spans)


def spans_to_mask(starts, use, size: int, length: int):
    """Union of spans ``[start, start + length)``.

    starts: [B, N] int start frames; use: [B, N] bool, which of them are real.
    Returns bool [B, size]. A frame is covered when a start lies in ``(t - length, t]``,
    counted with a cumulative sum instead of scattering ``N * length`` indices.
    """
    batch = starts.shape[0]
    rows = jnp.arange(batch)[:, None]
    marks = jnp.zeros((batch, size), jnp.int32).at[rows, starts].add(use.astype(jnp.int32))
    total = jnp.cumsum(marks, axis=1)
    before = jnp.pad(total, ((0, 0), (length, 0)))[:, :size]  # total at t - length
    return (total - before) > 0


def span_mask(rng, valid, prob: float, length: int, min_masks: int):
    """SpecAugment/wav2vec 2.0 time masking.

    Each row with ``n`` valid frames gets ``max(min_masks, int(prob * n / length + u))`` spans
    of ``length`` frames (u ~ U[0, 1)). Starts are drawn uniformly *without replacement* from
    ``[0, n - length]``, so spans stay inside the valid part, never touch padding, and may
    overlap (fairseq behaviour): the masked fraction is below ``prob``. Rows with
    ``n < length`` are not masked at all (HF behaviour), and the span count never exceeds the
    ``n - length + 1`` possible starts, so ``min_masks`` is honoured only when it fits.

    ``prob``, ``length`` and ``min_masks`` must be Python numbers (static under jit): they
    fix the static number of span slots.

    Args:
      rng: PRNG key.
      valid: [B, T] bool, right-padded.
      prob: expected fraction of frames that start a span, times ``length``.
      length: span length in frames.
      min_masks: minimum number of spans per row (when it fits).
    Returns:
      bool [B, T], True on masked frames.
    """
    valid = valid.astype(bool)
    batch, size = valid.shape
    max_spans = _max_spans(size, prob, length, min_masks)
    if max_spans == 0:
        return jnp.zeros((batch, size), bool)

    count_rng, start_rng = jax.random.split(rng)
    n_valid = jnp.sum(valid, axis=1).astype(jnp.int32)
    count = num_spans(count_rng, n_valid, prob, length, min_masks, max_spans)

    # A uniform subset without replacement = the top-k of i.i.d. uniform scores over the
    # allowed starts; its first ``count`` entries are again a uniform subset.
    allowed = jnp.arange(size)[None, :] <= (n_valid - length)[:, None]
    scores = jnp.where(allowed, jax.random.uniform(start_rng, (batch, size)), -1.0)
    _, starts = jax.lax.top_k(scores, max_spans)
    use = jnp.arange(max_spans)[None, :] < count[:, None]
    return spans_to_mask(starts, use, size, length) & valid


def channel_mask(rng, batch: int, dim: int, prob: float, length: int, min_masks: int = 0):
    """Feature-channel masking for fine-tuning: same span rule over ``dim`` channels.

    Returns bool [batch, dim]; the caller broadcasts it over time (one mask per utterance).
    """
    return span_mask(rng, jnp.ones((batch, dim), bool), prob, length, min_masks)


def sample_negatives(rng, candidates, num_negatives: int):
    """Distractor indices for contrastive learning.

    For every frame t, ``num_negatives`` frame indices drawn uniformly with replacement from
    the candidate frames of the same row, excluding t itself (HF/fairseq use the masked frames
    as candidates). Padding and non-candidates are never drawn.

    Degenerate rows: when a frame has no eligible distractor (its row has no candidate, or t
    is the only one) every index is ``t`` itself. The contrastive loss treats a distractor
    equal to the positive as ``-inf``, so such a frame contributes zero loss.

    Args:
      rng: PRNG key.
      candidates: [B, T] bool.
      num_negatives: K.
    Returns:
      int32 [B, T, K] indices into the T axis of the same row.
    """
    candidates = candidates.astype(bool)
    batch, size = candidates.shape
    n_cand = jnp.sum(candidates, axis=1, dtype=jnp.int32)  # [B]
    # rank -> position: a stable sort puts candidate positions first, in order.
    position_of_rank = jnp.argsort(~candidates, axis=1, stable=True).astype(jnp.int32)
    own_rank = jnp.cumsum(candidates, axis=1, dtype=jnp.int32) - 1  # meaningful on candidates
    n_eligible = n_cand[:, None] - candidates.astype(jnp.int32)  # [B, T]

    # Draw a rank among the n_eligible others, then skip over t's own rank.
    ranks = jax.random.randint(
        rng, (batch, size, num_negatives), 0, jnp.maximum(n_eligible, 1)[:, :, None]
    )
    ranks = ranks + (candidates[:, :, None] & (ranks >= own_rank[:, :, None]))
    picked = jnp.take_along_axis(
        position_of_rank, ranks.reshape(batch, size * num_negatives), axis=1
    ).reshape(batch, size, num_negatives)
    itself = jnp.broadcast_to(jnp.arange(size, dtype=jnp.int32)[None, :, None], picked.shape)
    return jnp.where(n_eligible[:, :, None] > 0, picked, itself)
