"""Batched autoregressive search over a generic step function: greedy and beam, jittable.

The step function is all a model has to provide:

    step_fn(tokens int32 [N], state) -> (log_probs float32 [N, V], state)

`tokens` is the last token of every row (the first call gets the start token); `state` is any
pytree, e.g. a decoder KV cache. The first call may change the state's structure (a cache
filling its cross-attention keys/values): it runs once before the loop, and the loop carries
the structure it returns. Beam search lays out N = B·K rows, row b·K + k being hypothesis k of
utterance b; after each step the state is gathered by the surviving hypotheses' parent rows
(`reorder`). Everything runs inside one `lax.while_loop` that stops when every utterance is
finished, so a batch costs the steps of its longest utterance, not `max_length`.

Beam search follows ESPnet's rule: each step keeps the K best extensions of all live
hypotheses, those ending in `eos_id` move to the finished set, and the live beam shrinks by
as many. Hence beam 1 is greedy search exactly. An utterance stops when no live hypothesis can
still beat its K-th finished one (scores are sums of log-probabilities, so they only fall) or
at `max_length`, where its live hypotheses are finished without an end token. Finished
hypotheses are ranked by score / length^length_alpha (length counts the end token).

Joint CTC/attention (Watanabe et al. 2017): with `ctc` (see `ctc_prefix.py`), each live
hypothesis's `pre_beam` best attention tokens are rescored as (1−λ)·attention + λ·CTC prefix
score, λ = `ctc_weight`; the other tokens are dropped.

Shapes: B utterances, K beam, N = B·K, V vocabulary, L = max_length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from unispeech_jax.decoding import ctc_prefix

StepFn = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def tile_beams(tree, beam: int):
    """Repeats every array of `tree` `beam` times along axis 0: [B, ...] → [B·K, ...] (row
    b·K + k is a copy of row b), the layout `beam_search` expects its state in."""
    return jax.tree.map(lambda x: jnp.repeat(x, beam, axis=0), tree)


def gather_rows(tree, rows):
    """Default state reordering: rows int [N] picks rows of every array whose axis 0 has N
    entries; other leaves (e.g. a scalar step counter) are kept."""
    n = rows.shape[0]
    return jax.tree.map(
        lambda x: jnp.take(x, rows, axis=0) if x.ndim and x.shape[0] == n else x, tree
    )


def _forbid_eos(log_probs, forbid, eos_id: int):
    """log_probs [N,V] with the end token at −inf where `forbid` (scalar bool)."""
    return log_probs.at[:, eos_id].set(jnp.where(forbid, -jnp.inf, log_probs[:, eos_id]))


def greedy_search(
    step_fn: StepFn,
    state,
    start,
    *,
    max_length: int,
    eos_id: int,
    pad_id: int,
    min_length: int = 0,
) -> dict:
    """Argmax decoding of B rows. start: int32 [B] first input token; state: for B rows.

    Returns dict tokens int32 [B, max_length] (the emitted tokens, end token excluded, pad_id
    after), lengths int32 [B], scores float32 [B] (sum of the chosen log-probs, end token
    included). The end token is not chosen before step `min_length`.
    """
    batch = start.shape[0]

    def body(carry):
        t, last, state, tokens, lengths, scores, done = carry
        log_probs, state = step_fn(last, state)
        log_probs = _forbid_eos(log_probs, t < min_length, eos_id)
        token = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
        ended = done | (token == eos_id)
        chosen = jnp.take_along_axis(log_probs, token[:, None], axis=1)[:, 0]
        scores = scores + jnp.where(done, 0.0, chosen)
        tokens = tokens.at[:, t].set(jnp.where(ended, pad_id, token))
        return t + 1, token, state, tokens, lengths + (~ended), scores, ended

    carry = body(
        (
            jnp.zeros((), jnp.int32),
            start.astype(jnp.int32),
            state,
            jnp.full((batch, max_length), pad_id, jnp.int32),
            jnp.zeros((batch,), jnp.int32),
            jnp.zeros((batch,), jnp.float32),
            jnp.zeros((batch,), bool),
        )
    )
    cond = lambda c: (c[0] < max_length) & ~jnp.all(c[6])
    _, _, _, tokens, lengths, scores, _ = jax.lax.while_loop(cond, body, carry)
    return {"tokens": tokens, "lengths": lengths, "scores": scores}


def _length_norm(length, alpha: float):
    """Divisor of a finished hypothesis's score: length^alpha (1 when alpha is 0)."""
    return jnp.maximum(length, 1).astype(jnp.float32) ** alpha


def _top_finished(scores, tokens, lengths, k: int):
    """The k best of [B,M] finished candidates (normalised scores; tokens [B,M,L])."""
    best, idx = jax.lax.top_k(scores, k)
    return (
        best,
        jnp.take_along_axis(tokens, idx[:, :, None], axis=1),
        jnp.take_along_axis(lengths, idx, axis=1),
    )


def beam_search(
    step_fn: StepFn,
    state,
    start,
    *,
    beam: int,
    max_length: int,
    eos_id: int,
    pad_id: int,
    min_length: int = 0,
    length_alpha: float = 0.0,
    ctc: dict | None = None,
    ctc_weight: float = 0.0,
    pre_beam: int | None = None,
    reorder: Callable[[Any, jax.Array], Any] = gather_rows,
) -> dict:
    """K-best decoding of B utterances (see the module docstring for the rules).

    step_fn, state: the model, with state laid out for N = B·K rows (`tile_beams`).
    start: int32 [B] first input token of each utterance.
    ctc: None, or `ctc_prefix.init(log_probs, lengths, blank_id)` of the utterances' CTC
      posteriors over the same vocabulary; then each live hypothesis's `pre_beam` best
      attention tokens (default max(2, int(1.5·K)), at most V) are scored jointly.
    reorder(state, rows int [N]) → state of the surviving hypotheses (default `gather_rows`).

    Returns dict, best first: tokens int32 [B,K,max_length] (end token excluded, pad_id
    after), lengths int32 [B,K], scores float32 [B,K] (normalised; −inf marks a slot with no
    hypothesis, when fewer than K exist).
    """
    batch = start.shape[0]
    n = batch * beam
    rows = jnp.arange(batch)[:, None] * beam
    prefix_state = None if ctc is None else ctc_prefix.initial_state(ctc, beam)

    def extend(log_probs, alive, prefix_state):
        """Scores [B, K·P] of the P candidate tokens [N,P] of every live hypothesis."""
        if ctc is None:
            cand = jnp.broadcast_to(
                jnp.arange(log_probs.shape[1], dtype=jnp.int32), log_probs.shape
            )
            return alive.reshape(n, 1) + log_probs, cand, None
        width = min(log_probs.shape[1], pre_beam or max(2, int(1.5 * beam)))
        att, cand = jax.lax.top_k(log_probs, width)
        scored = ctc_prefix.score(ctc, prefix_state, cand, beam, eos_id)
        joint = (1.0 - ctc_weight) * att
        if ctc_weight:  # skipped at 0: 0 · (−inf) would be NaN
            joint = joint + ctc_weight * ctc_prefix.increment(scored, prefix_state)
        return alive.reshape(n, 1) + joint, cand.astype(jnp.int32), scored

    def body(carry):
        t, last, state, alive, alive_tok, fin, fin_tok, fin_len, prefix_state = carry
        log_probs, state = step_fn(last, state)
        log_probs = _forbid_eos(log_probs.astype(jnp.float32), t < min_length, eos_id)
        total, cand, scored = extend(log_probs, alive, prefix_state)
        width = cand.shape[1]
        score, flat = jax.lax.top_k(total.reshape(batch, beam * width), beam)  # [B,K]
        parent = flat // width
        token = jnp.take_along_axis(cand.reshape(batch, beam * width), flat, axis=1)
        parent_tok = jnp.take_along_axis(alive_tok, parent[:, :, None], axis=1)
        ended = token == eos_id
        fin, fin_tok, fin_len = _top_finished(
            jnp.concatenate(
                [fin, jnp.where(ended, score / _length_norm(t + 1, length_alpha), -jnp.inf)], 1
            ),
            jnp.concatenate([fin_tok, parent_tok], 1),
            jnp.concatenate([fin_len, jnp.full((batch, beam), t, jnp.int32)], 1),
            beam,
        )
        alive = jnp.where(ended, -jnp.inf, score)
        alive_tok = parent_tok.at[:, :, t].set(jnp.where(ended, pad_id, token))
        # Scores only fall, so a live hypothesis can at best keep its score to max_length.
        best_possible = jnp.max(alive, axis=1) / _length_norm(max_length, length_alpha)
        done = jnp.isneginf(best_possible) | (fin[:, -1] >= best_possible)
        alive = jnp.where(done[:, None], -jnp.inf, alive)
        state = reorder(state, (rows + parent).reshape(n))
        if scored is not None:
            prefix_state = ctc_prefix.select(scored, flat, token, batch)
        return t + 1, token.reshape(n), state, alive, alive_tok, fin, fin_tok, fin_len, prefix_state

    neg = jnp.full((batch, beam), -jnp.inf, jnp.float32)
    carry = body(
        (
            jnp.zeros((), jnp.int32),
            jnp.repeat(start.astype(jnp.int32), beam),
            state,
            neg.at[:, 0].set(0.0),  # one live hypothesis (the empty one) to start from
            jnp.full((batch, beam, max_length), pad_id, jnp.int32),
            neg,
            jnp.full((batch, beam, max_length), pad_id, jnp.int32),
            jnp.zeros((batch, beam), jnp.int32),
            prefix_state,
        )
    )
    cond = lambda c: (c[0] < max_length) & ~jnp.all(jnp.isneginf(c[3]))
    _, _, _, alive, alive_tok, fin, fin_tok, fin_len, _ = jax.lax.while_loop(cond, body, carry)
    # Hypotheses still live at max_length finish there, without an end token.
    fin, fin_tok, fin_len = _top_finished(
        jnp.concatenate([fin, alive / _length_norm(max_length, length_alpha)], 1),
        jnp.concatenate([fin_tok, alive_tok], 1),
        jnp.concatenate([fin_len, jnp.full((batch, beam), max_length, jnp.int32)], 1),
        beam,
    )
    return {"tokens": fin_tok, "lengths": jnp.where(jnp.isneginf(fin), 0, fin_len), "scores": fin}
