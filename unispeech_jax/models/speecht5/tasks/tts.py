"""SpeechT5 TTS fine-tuning (text → speech), the loss of HF's SpeechT5ForTextToSpeech: L1 +
stop BCE + the guided attention loss on the decoder's cross-attention (tasks/spectrogram.py)."""

from __future__ import annotations

from unispeech_jax.models.speecht5.apply import split_rngs
from unispeech_jax.models.speecht5.tasks import spectrogram


def loss(module, params, model_state, batch, rng, step, train):
    """Text → speech L1 + stop BCE (+ guided attention) on a batch with `text` tokens and their
    `mel` (`spectrogram.loss`); see `loss_fn`."""
    rngs, _ = split_rngs(rng, train)
    tokens, token_mask = batch["text"], batch["text_mask"].astype(bool)

    def encode(self):
        return self.encode_text(tokens, token_mask, train=train)

    return spectrogram.loss(module, params, model_state, batch, rngs, train, encode, "tts")
