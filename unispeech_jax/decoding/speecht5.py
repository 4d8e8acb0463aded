"""SpeechT5 adapters: encode once, then decode with the decoder's incremental cache.

    recognize(model, variables, audio, audio_mask, beam=…, …) → list of token id lists (ASR)
    search(…)      the same, jittable, as arrays with the n-best list
    synthesize(model, variables, tokens, token_mask, speaker, rng=…, max_frames=…)
                   → (mel [B,F,M] after the post-net, lengths [B])  (TTS, jittable)
    convert(model, variables, audio, audio_mask, speaker, rng=…, max_frames=…)
                   → the same from speech (VC, SE; jittable)

`model` is a `models.speecht5.SpeechT5`, `variables` its {'params', 'batch_stats'}. The text
decoder starts from </s> (`decoder_start_token_id`), which is also the end token. Joint
CTC/attention decoding (ctc_weight > 0) needs the ASR CTC head on the encoder (a model trained
with model.ctc_loss_weight > 0; `SpeechT5.ctc_logits`, blank model.ctc_blank_id).

Shapes: B utterances, S samples, K beam, L = max_length, V text vocabulary, M mel bins, r
reduction factor, F frames.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from unispeech_jax.decoding import beam as beam_lib
from unispeech_jax.decoding import ctc_prefix, speech
from unispeech_jax.models import speecht5


def _leaf_batch_axes(args, max_length: int) -> dict:
    """{keystr(path): batch axis} of every leaf of an empty `init_cache` (found by comparing
    the shapes for 1 and 2 rows, so any cache layout works); leaves without one are absent."""
    shapes = [
        jax.tree_util.tree_flatten_with_path(
            jax.eval_shape(lambda b=b: speecht5.init_cache(args, b, max_length))
        )[0]
        for b in (1, 2)
    ]
    axes = {}
    for (path, one), (_, two) in zip(*shapes):
        differ = [i for i, (p, q) in enumerate(zip(one.shape, two.shape)) if p != q]
        if differ:
            axes[jax.tree_util.keystr(path)] = differ[0]
    return axes


def cache_reorder(args, max_length: int):
    """reorder(cache, rows int [N]) for `beam.beam_search`: gathers the per-row leaves of an
    empty cache (self-attention keys/values, validity) along their batch axis. Leaves the
    first step adds (the encoder output's cross-attention keys/values) are equal for all
    hypotheses of an utterance, so they are left as they are."""
    axes = _leaf_batch_axes(args, max_length)

    def reorder(cache, rows):
        def pick(path, x):
            axis = axes.get(jax.tree_util.keystr(path))
            return x if axis is None else jnp.take(x, rows, axis=axis)

        return jax.tree_util.tree_map_with_path(pick, cache)

    return reorder


def text_step(model, variables, enc, enc_valid):
    """Step function for `beam`: (tokens int [N], cache) → (log-probs float32 [N,V], cache),
    one text-decoder step on enc [N,T,D], enc_valid bool [N,T]."""
    step_valid = jnp.ones((enc.shape[0], 1), bool)

    def step(tokens, cache):
        logits, cache = model.apply(
            variables,
            tokens[:, None],
            enc,
            enc_valid,
            step_valid,
            cache,
            method=speecht5.SpeechT5.decode_text,
        )
        return jax.nn.log_softmax(logits[:, -1].astype(jnp.float32), axis=-1), cache

    return step


def search(
    model,
    variables,
    audio,
    audio_mask,
    *,
    max_length: int,
    beam: int = 1,
    min_length: int = 0,
    length_alpha: float = 0.0,
    ctc_weight: float = 0.0,
    ctc_blank_id: int | None = None,
) -> dict:
    """Speech → text n-best, jittable (every keyword static).

    audio float [B,S], audio_mask bool [B,S] → dict tokens int32 [B,K,max_length] (end token
    excluded, pad_token_id after), lengths int32 [B,K], scores float32 [B,K] (best first;
    normalised by length^length_alpha; −inf: no hypothesis). beam 1 without CTC is greedy
    search (K = 1). At most max_length tokens (the end token counts); the end token is not
    emitted before step min_length. ctc_weight λ: score (1−λ)·attention + λ·CTC prefix score,
    CTC blank ctc_blank_id (default model.ctc_blank_id).
    """
    a = model.args
    batch = audio.shape[0]
    enc = model.apply(variables, audio, audio_mask, method=speecht5.SpeechT5.encode_speech)
    start = jnp.full((batch,), a.decoder_start_token_id, jnp.int32)
    common = dict(
        max_length=max_length,
        eos_id=a.decoder_start_token_id,
        pad_id=a.pad_token_id,
        min_length=min_length,
    )
    if beam == 1 and not ctc_weight:
        step = text_step(model, variables, enc["hidden"], enc["valid"])
        cache = speecht5.init_cache(a, batch, max_length, enc["hidden"].dtype)
        out = beam_lib.greedy_search(step, cache, start, **common)
        return {k: v[:, None] for k, v in out.items()}
    ctc = None
    if ctc_weight:
        if not a.ctc_loss_weight:
            raise ValueError("ctc_weight > 0 needs a model with a CTC head (ctc_loss_weight > 0)")
        logits = model.apply(variables, enc["hidden"], method=speecht5.SpeechT5.ctc_logits)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        ctc = ctc_prefix.init(
            log_probs,
            enc["valid"].sum(axis=1),
            a.ctc_blank_id if ctc_blank_id is None else ctc_blank_id,
        )
    tiled = beam_lib.tile_beams({k: enc[k] for k in ("hidden", "valid")}, beam)
    step = text_step(model, variables, tiled["hidden"], tiled["valid"])
    cache = speecht5.init_cache(a, batch * beam, max_length, enc["hidden"].dtype)
    return beam_lib.beam_search(
        step,
        cache,
        start,
        beam=beam,
        length_alpha=length_alpha,
        ctc=ctc,
        ctc_weight=ctc_weight,
        reorder=cache_reorder(a, max_length),
        **common,
    )


@functools.lru_cache(maxsize=32)
def _compiled(model, options: tuple):
    return jax.jit(functools.partial(search, model, **dict(options)))


def recognize(model, variables, audio, audio_mask, **options) -> list[list[int]]:
    """The best hypothesis of each utterance as a list of token ids (no start/end token).

    audio float [B,S], audio_mask bool [B,S]; options: `search`'s keywords (max_length is
    required). One compiled program per (model, options, shapes).
    """
    out = _compiled(model, tuple(sorted(options.items())))(variables, audio, audio_mask)
    tokens, lengths = np.asarray(out["tokens"][:, 0]), np.asarray(out["lengths"][:, 0])
    return [row[:n].tolist() for row, n in zip(tokens, lengths)]


def speech_step(model, variables, enc, enc_valid, speaker, prenet_dropout: bool = True):
    """Step function for `speech.generate`: (frame [B,1,M], cache, rng) → (frames [B,r,M],
    stop_logits [B,r], cache), one speech-decoder step on enc [B,T,D], enc_valid bool [B,T],
    speaker [B,E] or None. prenet_dropout: the Tacotron pre-net dropout (rng stream 'prenet'),
    on at inference as trained; off only to compare with teacher forcing."""
    step_valid = jnp.ones((enc.shape[0], 1), bool)

    def step(frame, cache, rng):
        out, cache = model.apply(
            variables,
            frame,
            speaker,
            enc,
            enc_valid,
            step_valid,
            cache,
            prenet_dropout=prenet_dropout,
            method=speecht5.SpeechT5.decode_speech,
            rngs={"prenet": rng},
        )
        return out["mel_before"], out["stop_logits"], cache

    return step


def generate_mel(
    model,
    variables,
    enc,
    enc_valid,
    speaker,
    *,
    rng,
    max_frames: int,
    min_frames: int = 0,
    threshold: float = 0.5,
    prenet_dropout: bool = True,
):
    """Encoder output → log-mel spectrogram, batched; jittable with the keywords other than rng
    static (what `synthesize` and `convert` share).

    enc [B,T,D], enc_valid bool [B,T], speaker float [B,E] (x-vector or speaker-table row) or
    None, rng a key for the pre-net dropout (on at inference, as in Tacotron 2 and SpeechT5).
    Returns (mel float32 [B,F,M] after the post-net, run on each utterance's frames alone,
    zero past each length; lengths int32 [B] frames), F = max_frames rounded up to a multiple
    of r. An utterance stops at the first decoder step after min_frames whose r stop
    probabilities sum to ≥ threshold (Hugging Face's rule), or at max_frames.
    prenet_dropout=False makes generation deterministic (not how the model was trained).
    """
    a = model.args
    r = a.reduction_factor
    batch = enc.shape[0]
    max_steps = -(-max_frames // r)
    cache = speecht5.init_cache(a, batch, max_steps, enc.dtype)
    out = speech.generate(
        speech_step(model, variables, enc, enc_valid, speaker, prenet_dropout),
        cache,
        batch=batch,
        num_mel_bins=a.num_mel_bins,
        reduction_factor=r,
        max_steps=max_steps,
        min_steps=min_frames // r,
        threshold=threshold,
        rng=rng,
    )
    valid = jnp.arange(out["mel"].shape[1])[None, :] < out["lengths"][:, None]
    mel = model.apply(variables, out["mel"], frame_valid=valid, method=speecht5.SpeechT5.postnet)
    return jnp.where(valid[:, :, None], mel.astype(jnp.float32), 0.0), out["lengths"]


def synthesize(model, variables, tokens, token_mask, speaker, **options):
    """Text → log-mel spectrogram (TTS): tokens int [B,L] (SentencePiece ids + </s>),
    token_mask bool [B,L]; speaker and the keywords (rng, max_frames, …) and the result as
    `generate_mel`."""
    enc = model.apply(variables, tokens, token_mask, method=speecht5.SpeechT5.encode_text)
    return generate_mel(model, variables, enc["hidden"], enc["valid"], speaker, **options)


def convert(model, variables, audio, audio_mask, speaker, **options):
    """Speech → log-mel spectrogram (VC, SE): audio float [B,S], audio_mask bool [B,S] at 16
    kHz; speaker (vc: the target voice) and the keywords and the result as `generate_mel`."""
    enc = model.apply(variables, audio, audio_mask, method=speecht5.SpeechT5.encode_speech)
    return generate_mel(model, variables, enc["hidden"], enc["valid"], speaker, **options)
