"""SpeechT5 ASR fine-tuning (speech → text), the loss of HF's SpeechT5ForSpeechToText;
`decoding.speecht5.recognize` transcribes."""

from __future__ import annotations

from unispeech_jax.models import layers, masking
from unispeech_jax.models.speecht5.apply import apply_forward, split_rngs
from unispeech_jax.models.speecht5.targets import text_targets, token_terms


def loss(module, params, model_state, batch, rng, step, train):
    """Speech → text cross-entropy on a batch with audio and its `text` tokens; see `loss_fn`."""
    a = module.args
    rngs, mask_rng = split_rngs(rng, train)
    audio, audio_mask = batch["audio"], batch["audio_mask"].astype(bool)
    mask_time = None
    if train and a.mask_time_prob > 0:  # HF's SpecAugment-style time masking, training only
        frames = layers.frame_validity(audio_mask, a.conv_kernel, a.conv_stride)
        mask_time = masking.span_mask(
            mask_rng, frames, a.mask_time_prob, a.mask_time_length, a.mask_time_min_masks
        )
    dec_in, target, dec_valid, counted = text_targets(a, batch)

    def forward(self):
        enc = self.encode_speech(audio, audio_mask, mask_time, train=train)
        return self.decode_text(dec_in, enc["hidden"], enc["valid"], dec_valid, train=train)[0]

    logits, _, model_state = apply_forward(module, params, model_state, forward, rngs, train)
    ce, accuracy = token_terms(logits, target, counted, a.label_smoothing)
    return ce, ({"loss": ce, "asr/ce": ce, "asr/accuracy": accuracy}, model_state)
