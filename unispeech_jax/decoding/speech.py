"""Batched autoregressive mel generation with a stop token, jittable.

The model provides one decoder step:

    step_fn(frame float [B,1,M], state, rng) -> (frames float [B,r,M], stop_logits [B,r], state)

`frame` is the last frame generated so far (all zeros at the first step), r the reduction
factor (frames per step), `rng` a fresh key per step (for the Tacotron pre-net dropout that
stays on at inference). The first call may change the state's structure (a cache filling its
cross-attention keys/values): it runs once before the loop.

Stopping follows Hugging Face's SpeechT5 `generate_speech`: an utterance ends at the first
step n ≥ min_steps (1-based) whose r stop probabilities sum to ≥ `threshold`, or at max_steps;
its length is n·r frames (the frames of the stopping step included). The loop runs until
every utterance has ended. Frames past an utterance's length are zero, so a post-net (a
convolution) sees exactly what it would for that utterance alone.

Shapes: B utterances, M mel bins, r frames per step, F = max_steps·r.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

SpeechStepFn = Callable[[jax.Array, Any, jax.Array], tuple[jax.Array, jax.Array, Any]]


def generate(
    step_fn: SpeechStepFn,
    state,
    *,
    batch: int,
    num_mel_bins: int,
    reduction_factor: int,
    max_steps: int,
    rng,
    min_steps: int = 0,
    threshold: float = 0.5,
) -> dict:
    """Generates up to max_steps decoder steps for B utterances.

    Returns dict mel float32 [B,F,M] (the step outputs, zero past each length), lengths int32
    [B] (frames, a multiple of r), stop_probs float32 [B,F] (zero past each length).
    """
    r, m = reduction_factor, num_mel_bins

    def body(carry):
        t, frame, state, mel, stop, lengths = carry
        frames, stop_logits, state = step_fn(frame, state, jax.random.fold_in(rng, t))
        frames = frames.astype(jnp.float32)
        probs = jax.nn.sigmoid(stop_logits.astype(jnp.float32))
        live = lengths == 0
        n = t + 1
        ends = (
            live
            & (n >= min(min_steps, max_steps))
            & ((probs.sum(-1) >= threshold) | (n >= max_steps))
        )
        mel = jax.lax.dynamic_update_slice(
            mel, jnp.where(live[:, None, None], frames, 0.0), (0, t * r, 0)
        )
        stop = jax.lax.dynamic_update_slice(stop, jnp.where(live[:, None], probs, 0.0), (0, t * r))
        lengths = jnp.where(ends, n * r, lengths)
        return n, frames[:, -1:], state, mel, stop, lengths

    carry = body(
        (
            jnp.zeros((), jnp.int32),
            jnp.zeros((batch, 1, m), jnp.float32),
            state,
            jnp.zeros((batch, max_steps * r, m), jnp.float32),
            jnp.zeros((batch, max_steps * r), jnp.float32),
            jnp.zeros((batch,), jnp.int32),
        )
    )
    cond = lambda c: (c[0] < max_steps) & jnp.any(c[5] == 0)
    _, _, _, mel, stop, lengths = jax.lax.while_loop(cond, body, carry)
    return {"mel": mel, "lengths": lengths, "stop_probs": stop}
