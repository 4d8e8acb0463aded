"""SpeechT5 joint pre-training (SPEC §3): speech batches (masked prediction + mel
reconstruction + stop token) and text-infilling batches are separate steps; both add the
cross-modal quantizer's diversity loss."""

from __future__ import annotations

import jax.numpy as jnp

from unispeech_jax import losses
from unispeech_jax.models import layers, masking
from unispeech_jax.models.quantizer import gumbel_temperature
from unispeech_jax.models.speecht5.apply import apply_forward, split_rngs
from unispeech_jax.models.speecht5.targets import (
    spectrogram_terms,
    speech_targets,
    text_targets,
    token_terms,
)


def quantizer_metrics(sown, prefix: str) -> dict:
    """The hard (argmax) and soft code perplexities the quantizer sowed this step."""
    return {
        f"{prefix}/code_perplexity": sown["quantizer"]["code_perplexity"][0],
        f"{prefix}/prob_perplexity": sown["quantizer"]["prob_perplexity"][0],
    }


def speech_loss(module, params, model_state, batch, rng, step, train):
    """L_mlm + L_1 + L_bce + γ·L_d on a speech batch (audio, km, mel); see `loss_fn`."""
    a = module.args
    rngs, mask_rng = split_rngs(rng, train)
    audio, audio_mask = batch["audio"], batch["audio_mask"].astype(bool)
    frames = layers.frame_validity(audio_mask, a.conv_kernel, a.conv_stride)
    if frames.shape != batch["km"].shape:
        raise ValueError(
            f"km labels {batch['km'].shape} do not match the model's frames {frames.shape}: "
            "k-means labels assume the standard conv stack (total stride 320, window 400)"
        )
    labelled = frames & batch["km_mask"].astype(bool) & (batch["weight"] > 0)[:, None]
    mask_time = masking.span_mask(
        mask_rng, labelled, a.mask_time_prob, a.mask_time_length, a.mask_time_min_masks
    )
    target, frame_valid, dec_in, dec_valid = speech_targets(a, batch)
    temperature = gumbel_temperature(step, *a.gumbel_temperature)

    def forward(self):
        enc = self.encode_speech(audio, audio_mask, mask_time, train=train)
        vq = self.cross_modal_quantize(enc["hidden"], enc["valid"], temperature, train)
        out = self.decode_mel(dec_in, None, vq["hidden"], enc["valid"], dec_valid, train)
        return self.cluster_logits(enc["hidden"]), vq["perplexity"], out

    (logits, perplexity, out), sown, model_state = apply_forward(
        module, params, model_state, forward, rngs, train
    )
    mlm, accuracy = losses.masked_prediction_loss(logits, batch["km"], mask_time)
    l1, bce = spectrogram_terms(a, out, target, frame_valid)
    diversity = losses.diversity_loss(
        perplexity, a.num_codevector_groups * a.num_codevectors_per_group
    )
    loss = mlm + l1 + bce + a.diversity_loss_weight * diversity
    metrics = {
        "loss": loss,
        "speech/loss": loss,
        "speech/mlm": mlm,
        "speech/mlm_accuracy": accuracy,
        "speech/l1": l1,
        "speech/bce": bce,
        "speech/diversity": diversity,
        "speech/masked_fraction": jnp.sum(mask_time) / jnp.maximum(jnp.sum(labelled), 1),
        "temperature": jnp.asarray(temperature, jnp.float32),
        **quantizer_metrics(sown, "speech"),
    }
    return loss, (metrics, model_state)


def text_loss(module, params, model_state, batch, rng, step, train):
    """L_mle + γ·L_d on a text-infilling batch (text_source → text); see `loss_fn`."""
    a = module.args
    rngs, _ = split_rngs(rng, train)
    source, source_mask = batch["text_source"], batch["text_source_mask"].astype(bool)
    dec_in, target, dec_valid, counted = text_targets(a, batch)
    temperature = gumbel_temperature(step, *a.gumbel_temperature)

    def forward(self):
        enc = self.encode_text(source, source_mask, train=train)
        vq = self.cross_modal_quantize(enc["hidden"], source_mask, temperature, train)
        logits, _ = self.decode_text(dec_in, vq["hidden"], source_mask, dec_valid, train=train)
        return logits, vq["perplexity"]

    (logits, perplexity), sown, model_state = apply_forward(
        module, params, model_state, forward, rngs, train
    )
    mle, accuracy = token_terms(logits, target, counted)
    diversity = losses.diversity_loss(
        perplexity, a.num_codevector_groups * a.num_codevectors_per_group
    )
    loss = mle + a.diversity_loss_weight * diversity
    metrics = {
        "loss": loss,
        "text/loss": loss,
        "text/mle": mle,
        "text/accuracy": accuracy,
        "text/diversity": diversity,
        "temperature": jnp.asarray(temperature, jnp.float32),
        **quantizer_metrics(sown, "text"),
    }
    return loss, (metrics, model_state)


def loss(module, params, model_state, batch, rng, step, train):
    """The pre-training loss of a speech or a text batch (by its keys); see `objective.loss_fn`."""
    part = text_loss if "text_source" in batch else speech_loss
    return part(module, params, model_state, batch, rng, step, train)
