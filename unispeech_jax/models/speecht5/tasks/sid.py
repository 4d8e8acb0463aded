"""SpeechT5 speaker identification fine-tuning: the speech-encoder pre-net and encoder, the
mean of the utterance's valid encoder frames, a linear `sid_embed` to a speaker embedding
(model.speaker_embedding_dim wide: what TTS reads as an x-vector) and a linear `sid_proj` to
one logit per training speaker (model.num_speakers classes); cross-entropy on the batch's
`speaker` index. The decoder is not run."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from unispeech_jax.models import COUNTED_ROWS
from unispeech_jax.models.speecht5.apply import apply_forward, split_rngs
from unispeech_jax.models.speecht5.tasks.asr import time_mask


def class_terms(logits, speaker, counted):
    """(cross-entropy, accuracy) of logits float [B,C] for int speaker [B], averaged over the
    counted bool [B] rows (weight > 0 and a training speaker, index >= 0)."""
    log_probs = jax.nn.log_softmax(logits, -1)
    nll = -jnp.take_along_axis(log_probs, jnp.maximum(speaker, 0)[:, None], -1)[:, 0]
    n = jnp.maximum(jnp.sum(counted), 1)
    correct = (jnp.argmax(logits, -1) == speaker) & counted
    return jnp.sum(jnp.where(counted, nll, 0.0)) / n, jnp.sum(correct) / n


def loss(module, params, model_state, batch, rng, step, train):
    """Speaker cross-entropy of a batch with audio and its `speaker` index (-1, a voice
    outside the training speakers, counts 0: metric COUNTED_ROWS says how many did); see
    `loss_fn`."""
    a = module.args
    rngs, mask_rng = split_rngs(rng, train)
    audio, audio_mask = batch["audio"], batch["audio_mask"].astype(bool)
    mask_time = time_mask(a, audio_mask, mask_rng, train)

    def forward(self):
        enc = self.encode_speech(audio, audio_mask, mask_time, train=train)
        return self.speaker_logits(self.utterance_embedding(enc["hidden"], enc["valid"]))

    logits, _, model_state = apply_forward(module, params, model_state, forward, rngs, train)
    speaker = batch["speaker"].astype(jnp.int32)
    counted = (batch["weight"] > 0) & (speaker >= 0)
    ce, accuracy = class_terms(logits, speaker, counted)
    metrics = {"loss": ce, "sid/ce": ce, "sid/accuracy": accuracy}
    return ce, ({**metrics, COUNTED_ROWS: jnp.sum(counted).astype(jnp.float32)}, model_state)
