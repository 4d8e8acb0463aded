"""Teacher-forcing decoder inputs and targets of a batch (speech and text), and how the text
targets are scored."""

from __future__ import annotations

import jax.numpy as jnp

from unispeech_jax import losses
from unispeech_jax.models.speecht5.args import ModelArgs


def shift_spectrograms_right(mel, reduction_factor: int):
    """Teacher-forcing decoder input for mel targets [B,N,M] → [B,N//r,M]: every r-th frame
    (the last of each group of r), shifted one step right with an all-zero first frame."""
    frames = mel[:, reduction_factor - 1 :: reduction_factor]
    return jnp.pad(frames, ((0, 0), (1, 0), (0, 0)))[:, :-1]


def speech_targets(args: ModelArgs, batch):
    """Teacher-forced speech decoder inputs and targets from a batch with `mel`.

    mel [B,F,M] is cut to N = F − F mod r frames: target [B,N,M], frame_valid bool [B,N] (real
    frames of weight > 0 rows), decoder input [B,N/r,M] (every r-th frame shifted right) and
    step validity bool [B,N/r] (a step is real when its first frame is; HF's decoder mask uses
    the last one, the same whenever each utterance has whole groups of r frames).
    """
    r = args.reduction_factor
    n = batch["mel"].shape[1] // r * r
    target = batch["mel"][:, :n].astype(jnp.float32)
    frame_valid = batch["mel_mask"][:, :n].astype(bool) & (batch["weight"] > 0)[:, None]
    return target, frame_valid, shift_spectrograms_right(target, r), frame_valid[:, ::r]


def text_targets(args: ModelArgs, batch):
    """Teacher-forced text decoder input and targets from a batch with `text`: step l reads
    target l − 1 (step 0 the start token </s>) and predicts target l.

    → (decoder input int [B,L], target int [B,L], step validity bool [B,L], counted bool [B,L]:
    the real targets of weight > 0 rows)."""
    target = batch["text"]
    valid = batch["text_mask"].astype(bool)
    dec_in = jnp.pad(target, ((0, 0), (1, 0)), constant_values=args.decoder_start_token_id)
    return dec_in[:, :-1], target, valid, valid & (batch["weight"] > 0)[:, None]


def token_terms(logits, target, counted, label_smoothing: float = 0.0):
    """(cross-entropy, accuracy) of logits [B,L,V] for int target [B,L], averaged over the
    counted bool [B,L] tokens of the whole batch (as torch's CrossEntropyLoss with -100)."""
    nll = losses.text_nll_loss(logits, target, counted, label_smoothing)
    correct = (jnp.argmax(logits, -1) == target) & counted
    return nll, jnp.sum(correct) / jnp.maximum(jnp.sum(counted), 1)


def spectrogram_terms(args: ModelArgs, out, target, frame_valid):
    """(L1, stop BCE) of a speech decoder output {mel_before, mel_after [B,N,M], stop_logits
    [B,N]} against target [B,N,M] on frame_valid bool [B,N] (`losses.spectrogram_loss`)."""
    return losses.spectrogram_loss(
        out["mel_before"],
        out["mel_after"],
        out["stop_logits"],
        target,
        frame_valid,
        args.stop_pos_weight,
    )
