"""SpeechT5 TTS fine-tuning (text → speech), the loss of HF's SpeechT5ForTextToSpeech: L1 +
stop BCE + the guided attention loss on the decoder's cross-attention."""

from __future__ import annotations

import jax.numpy as jnp

from unispeech_jax import losses
from unispeech_jax.models.speecht5.apply import apply_forward, split_rngs
from unispeech_jax.models.speecht5.args import ModelArgs
from unispeech_jax.models.speecht5.targets import spectrogram_terms, speech_targets


def cross_attention_probs(args: ModelArgs, sown):
    """The guided heads' cross-attention probabilities from the sown 'intermediates' →
    [B, layers·h, L, T]: heads [:guided_attention_loss_num_heads] of every decoder layer (a
    Python slice, as HF: −1 keeps all heads but the last), layer by layer."""
    n = args.guided_attention_loss_num_heads
    decoder = sown["decoder"]
    if "layers" in decoder:  # scanned: [N, B, h, L, T]
        probs = decoder["layers"]["encoder_attn"]["probs"][0][:, :, :n]
        return jnp.concatenate(list(probs), axis=1)
    return jnp.concatenate(
        [
            decoder[f"layers_{i}"]["encoder_attn"]["probs"][0][:, :n]
            for i in range(args.decoder_layers)
        ],
        axis=1,
    )


def loss(module, params, model_state, batch, rng, step, train):
    """Text → speech L1 + stop BCE (+ guided attention) on a batch with `text` tokens and their
    `mel`; the speaker input is the batch's `speaker_embedding` [B,E] if it has one, else the
    speaker table's row of `speaker` [B] (num_speakers > 0), else none; see `loss_fn`."""
    a = module.args
    rngs, _ = split_rngs(rng, train)
    tokens, token_mask = batch["text"], batch["text_mask"].astype(bool)
    target, frame_valid, dec_in, dec_valid = speech_targets(a, batch)

    def forward(self):
        speaker = batch.get("speaker_embedding")
        if speaker is None and a.num_speakers > 0:
            speaker = self.speaker_vectors(batch["speaker"])
        enc = self.encode_text(tokens, token_mask, train=train)
        return self.decode_mel(dec_in, speaker, enc["hidden"], token_mask, dec_valid, train)

    out, sown, model_state = apply_forward(module, params, model_state, forward, rngs, train)
    l1, bce = spectrogram_terms(a, out, target, frame_valid)
    loss = l1 + bce
    metrics = {"tts/l1": l1, "tts/bce": bce}
    if a.use_guided_attention_loss:
        attention = a.guided_attention_loss_scale * losses.guided_attention_loss(
            cross_attention_probs(a, sown), token_mask, dec_valid, a.guided_attention_loss_sigma
        )
        loss = loss + attention
        metrics["tts/attention"] = attention
    return loss, ({"loss": loss, **metrics}, model_state)
