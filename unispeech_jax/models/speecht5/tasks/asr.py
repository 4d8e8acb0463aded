"""SpeechT5 ASR fine-tuning (speech → text): the cross-entropy of HF's SpeechT5ForSpeechToText,
plus SpeechT5's CTC on the encoder output (`ctc_loss_weight`, the `ctc_proj` head);
`decoding.speecht5.recognize` transcribes (joint CTC/attention through `ctc_logits`)."""

from __future__ import annotations

import jax.numpy as jnp

from unispeech_jax import losses
from unispeech_jax.models import layers, masking
from unispeech_jax.models.speecht5.apply import apply_forward, split_rngs
from unispeech_jax.models.speecht5.args import ModelArgs
from unispeech_jax.models.speecht5.targets import text_targets, token_terms


def ctc_term(args: ModelArgs, logits, frame_valid, batch):
    """CTC of the encoder head's logits [B,T,V] on frame_valid bool [B,T] for the batch's `text`
    without its </s>, summed over utterances of weight > 0 and divided by their target tokens
    (so that it is per token, as the cross-entropy: the recipe's CE : CTC ratio). Utterances
    too short for their transcript count 0 (the recipe's zero_infinity)."""
    text = batch["text"]
    labels = batch["text_mask"].astype(bool) & (text != args.decoder_start_token_id)
    labels &= (batch["weight"] > 0)[:, None]
    per_utterance = losses.ctc_loss(logits, frame_valid, text, labels, args.ctc_blank_id)
    return jnp.sum(per_utterance) / jnp.maximum(jnp.sum(labels), 1)


def time_mask(args: ModelArgs, audio_mask, rng, train: bool):
    """The encoder frames a fine-tuning step masks (HF's SpecAugment-style time masking,
    mask_time_*, training only): bool [B,T] for audio_mask bool [B,S], or None."""
    if not train or args.mask_time_prob <= 0:
        return None
    frames = layers.frame_validity(audio_mask, args.conv_kernel, args.conv_stride)
    return masking.span_mask(
        rng, frames, args.mask_time_prob, args.mask_time_length, args.mask_time_min_masks
    )


def loss(module, params, model_state, batch, rng, step, train):
    """Speech → text cross-entropy (+ ctc_loss_weight × CTC) on a batch with audio and its
    `text` tokens; see `loss_fn`."""
    return speech_to_text_loss(module, params, model_state, batch, rng, train, "asr")


def speech_to_text_loss(module, params, model_state, batch, rng, train, prefix: str):
    """The text decoder's cross-entropy (+ ctc_loss_weight × CTC) of a speech batch's `text`
    (asr: the transcript; st: the translation) → (loss, ({loss, <prefix>/ce, <prefix>/accuracy,
    <prefix>/ctc}, model_state))."""
    a = module.args
    rngs, mask_rng = split_rngs(rng, train)
    audio, audio_mask = batch["audio"], batch["audio_mask"].astype(bool)
    mask_time = time_mask(a, audio_mask, mask_rng, train)
    dec_in, target, dec_valid, counted = text_targets(a, batch)

    def forward(self):
        enc = self.encode_speech(audio, audio_mask, mask_time, train=train)
        logits = self.decode_text(dec_in, enc["hidden"], enc["valid"], dec_valid, train=train)[0]
        ctc = self.ctc_logits(enc["hidden"]) if a.ctc_loss_weight > 0 else None
        return logits, ctc, enc["valid"]

    (logits, ctc_logits, frame_valid), _, model_state = apply_forward(
        module, params, model_state, forward, rngs, train
    )
    ce, accuracy = token_terms(logits, target, counted, a.label_smoothing)
    loss, metrics = ce, {f"{prefix}/ce": ce, f"{prefix}/accuracy": accuracy}
    if a.ctc_loss_weight > 0:
        ctc = ctc_term(a, ctc_logits, frame_valid, batch)
        loss = ce + a.ctc_loss_weight * ctc
        metrics[f"{prefix}/ctc"] = ctc
    return loss, ({"loss": loss, **metrics}, model_state)
