"""Decoding of model outputs into label ids: CTC on host, SpeechT5 greedy attention decoding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from unispeech_jax.models import speecht5


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


def speecht5_greedy(module, variables, audio, audio_mask, max_length: int):
    """Greedy speech → text decoding (ASR) with SpeechT5's decoder cache, for exactly
    `max_length` steps (jit with it static: one compiled loop, no per-step dispatch).

    module: a `models.speecht5.SpeechT5`; variables: its {'params', ...}; audio [B,S],
    audio_mask bool [B,S] → int32 [B, max_length]: the argmax token of each step, starting
    from </s> (decoder_start_token_id, also the end token); after an example's </s> its
    later steps are pad_token_id. Finished examples keep stepping (static shapes).
    """
    a = module.args
    batch = audio.shape[0]
    enc = module.apply(variables, audio, audio_mask, method=speecht5.SpeechT5.encode_speech)
    step_valid = jnp.ones((batch, 1), bool)

    def step(carry, _):
        token, cache, done = carry
        logits, cache = module.apply(
            variables,
            token[:, None],
            enc["hidden"],
            enc["valid"],
            step_valid,
            cache,
            method=speecht5.SpeechT5.decode_text,
        )
        token = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
        token = jnp.where(done, a.pad_token_id, token)
        return (token, cache, done | (token == a.decoder_start_token_id)), token

    start = jnp.full((batch,), a.decoder_start_token_id, jnp.int32)
    cache = speecht5.init_cache(a, batch, max_length, enc["hidden"].dtype)
    # The first step fills the cross-attention cache; the loop's carry then keeps its structure.
    carry, first = step((start, cache, jnp.zeros((batch,), bool)), None)
    _, rest = jax.lax.scan(step, carry, None, length=max_length - 1)
    return jnp.concatenate([first[:, None], rest.T], axis=1)
