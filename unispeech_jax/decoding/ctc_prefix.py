"""CTC prefix scores for joint CTC/attention decoding, batched over utterances × hypotheses ×
candidate tokens (Watanabe et al. 2017, "Hybrid CTC/attention", Algorithm 2), in log space.

For a label prefix h and frames t = 0 … T−1 with CTC posteriors y_t(·):
  r^n_t(h), r^b_t(h): log-probability that frames 0 … t emit exactly h, ending in a non-blank
  (resp. blank) frame. A slot t = −1 ("before any frame") holds r^b = 0 for the empty prefix
  and −inf otherwise, so every prefix follows one recursion. For h' = h + c:
    φ_t        = logaddexp(r^b_t(h), r^n_t(h) unless last(h) = c)   (c may not follow itself
                 without a blank in between)
    r^n_t(h')  = logaddexp(r^n_{t−1}(h'), φ_{t−1}) + log y_t(c)
    r^b_t(h')  = logaddexp(r^b_{t−1}(h'), r^n_{t−1}(h')) + log y_t(blank)
    ψ(h')      = logsumexp_t (φ_{t−1} + log y_t(c))      the prefix score: log Σ over label
                 sequences that start with h' of their CTC probability
    ψ(h + eos) = logaddexp(r^n_{T−1}(h), r^b_{T−1}(h))   = log P_ctc(h | x)
  and the blank is never a candidate (ψ = −inf). Padding frames (t ≥ length) are given
  y(blank) = 1, y(other) = 0: they add nothing, and r at T−1 equals r at length−1.

Shapes: B utterances, T frames, V vocabulary (CTC and attention share ids), K hypotheses per
utterance, N = B·K, P candidate tokens per hypothesis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def init(log_probs, lengths, blank_id) -> dict:
    """CTC posteriors of a batch → the constants the scorer reads.

    log_probs: float [B,T,V] (log-softmax over the CTC vocabulary); lengths: int [B] valid
    frames; blank_id: int. Returns {'x': float32 [B,T,V] with padding frames made blank,
    'blank': int32 []}.
    """
    log_probs = log_probs.astype(jnp.float32)
    frames, vocab = log_probs.shape[1:]
    valid = jnp.arange(frames)[None, :, None] < jnp.asarray(lengths)[:, None, None]
    pad_frame = jnp.where(jnp.arange(vocab) == blank_id, 0.0, -jnp.inf)
    return {"x": jnp.where(valid, log_probs, pad_frame), "blank": jnp.asarray(blank_id, jnp.int32)}


def initial_state(ctc: dict, beam: int) -> dict:
    """State of K empty prefixes per utterance: {'r': [N,T+1,2] (slots t = −1 … T−1; [..., 0]
    r^n, [..., 1] r^b), 'psi': [N] ψ(h) (0 for the empty prefix), 'last': int32 [N] last
    label of h (−1: none)}."""
    x = ctc["x"]
    blank = jnp.take(x, ctc["blank"], axis=2)  # [B,T]
    r_b = jnp.concatenate([jnp.zeros_like(blank[:, :1]), jnp.cumsum(blank, axis=1)], axis=1)
    r = jnp.stack([jnp.full_like(r_b, -jnp.inf), r_b], axis=-1)
    n = x.shape[0] * beam
    return {
        "r": jnp.repeat(r, beam, axis=0),
        "psi": jnp.zeros((n,), jnp.float32),
        "last": jnp.full((n,), -1, jnp.int32),
    }


def _candidate_frames(x, cand, beam: int):
    """log y_t(c) of each hypothesis's candidates: x [B,T,V], cand int [N,P] → [T,N,P]."""
    b, frames, _ = x.shape
    width = cand.shape[1]
    picked = jnp.take_along_axis(x, cand.reshape(b, 1, beam * width), axis=2)  # [B,T,K·P]
    return picked.reshape(b, frames, beam, width).transpose(1, 0, 2, 3).reshape(frames, -1, width)


def score(ctc: dict, state: dict, cand, beam: int, eos_id: int) -> dict:
    """Prefix scores of every hypothesis h extended by each of its candidates c.

    state: `initial_state` / `select` for N rows; cand: int [N,P]. Returns {'psi': [N,P]
    ψ(h + c) (the full CTC log-likelihood of h for c = eos_id, −inf for the blank),
    'r': [N,P,T+1,2] the new prefixes' r}.
    """
    x = ctc["x"]
    r_n, r_b = state["r"][..., 0], state["r"][..., 1]  # [N,T+1]
    repeat = (state["last"][:, None] == cand)[:, :, None]
    phi = jnp.logaddexp(r_b[:, None, :], jnp.where(repeat, -jnp.inf, r_n[:, None, :]))  # [N,P,T+1]
    y = _candidate_frames(x, cand, beam)  # [T,N,P]
    y_blank = jnp.repeat(jnp.take(x, ctc["blank"], axis=2), beam, axis=0).T  # [T,N]
    phi_prev = jnp.moveaxis(phi[:, :, :-1], 2, 0)  # φ_{t−1} for t = 0 … T−1: [T,N,P]

    def frame(carry, inputs):
        n_prev, b_prev = carry
        phi_t, y_t, blank_t = inputs
        n_t = jnp.logaddexp(n_prev, phi_t) + y_t
        b_t = jnp.logaddexp(b_prev, n_prev) + blank_t[:, None]
        return (n_t, b_t), (n_t, b_t)

    start = jnp.full(cand.shape, -jnp.inf, jnp.float32)
    _, (new_n, new_b) = jax.lax.scan(frame, (start, start), (phi_prev, y, y_blank))
    psi = jax.nn.logsumexp(phi_prev + y, axis=0)
    full = jnp.logaddexp(r_n[:, -1], r_b[:, -1])[:, None]
    psi = jnp.where(cand == eos_id, full, jnp.where(cand == ctc["blank"], -jnp.inf, psi))
    r = jnp.stack([new_n, new_b], axis=-1)  # [T,N,P,2]
    r = jnp.concatenate([jnp.full_like(r[:1], -jnp.inf), r], axis=0)
    return {"psi": psi, "r": jnp.moveaxis(r, 0, 2)}


def increment(scored: dict, state: dict):
    """ψ(h + c) − ψ(h), [N,P]: the CTC term a candidate adds to its hypothesis's score (−inf
    where h itself is impossible under CTC, instead of −inf − (−inf))."""
    prev = state["psi"][:, None]
    return jnp.where(jnp.isneginf(prev), -jnp.inf, scored["psi"] - prev)


def select(scored: dict, flat, token, batch: int) -> dict:
    """State of the kept hypotheses: flat int [B,K] indexes each utterance's K·P candidates
    (hypothesis-major), token int [B,K] their labels → state for N = B·K rows."""
    beam = flat.shape[1]
    width = scored["psi"].shape[1]
    pick = lambda a: jnp.take_along_axis(
        a.reshape((batch, beam * width) + a.shape[2:]),
        flat.reshape(flat.shape + (1,) * (a.ndim - 2)),
        axis=1,
    ).reshape((batch * beam,) + a.shape[2:])
    return {"r": pick(scored["r"]), "psi": pick(scored["psi"]), "last": token.reshape(-1)}
