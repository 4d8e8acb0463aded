"""The objective every SpeechT5 task with speech output shares (tts, vc, se): the speech
decoder and post-net teacher-forced on the batch's `mel` over an encoder output, L1 (before +
after the post-net) + stop BCE (+ the guided attention loss on the decoder's cross-attention),
the loss of HF's SpeechT5ForTextToSpeech. The tasks differ only in what they encode."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from unispeech_jax import losses
from unispeech_jax.models.speecht5.apply import apply_forward
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


def loss(module, params, model_state, batch, rngs, train: bool, encode: Callable, task: str):
    """L1 + stop BCE (+ guided attention) of the batch's target `mel` [B,F,M] (`mel_mask`).

    encode(self) → {hidden [B,T,D], valid bool [B,T]}: the task's encoder pass, run inside
    the module. The speaker input is the batch's `speaker_embedding` [B,E] if it has one, else
    the speaker table's row of `speaker` [B] (num_speakers > 0), else none. rngs: the flax
    streams of `apply.split_rngs`. Metrics '<task>/l1', '<task>/bce', '<task>/attention'.
    """
    a = module.args
    target, frame_valid, dec_in, dec_valid = speech_targets(a, batch)

    def forward(self):
        speaker = batch.get("speaker_embedding")
        if speaker is None and a.num_speakers > 0:
            speaker = self.speaker_vectors(batch["speaker"])
        enc = encode(self)
        out = self.decode_mel(dec_in, speaker, enc["hidden"], enc["valid"], dec_valid, train)
        return out, enc["valid"]

    (out, enc_valid), sown, model_state = apply_forward(
        module, params, model_state, forward, rngs, train
    )
    l1, bce = spectrogram_terms(a, out, target, frame_valid)
    loss = l1 + bce
    metrics = {f"{task}/l1": l1, f"{task}/bce": bce}
    if a.use_guided_attention_loss:
        attention = a.guided_attention_loss_scale * losses.guided_attention_loss(
            cross_attention_probs(a, sown), enc_valid, dec_valid, a.guided_attention_loss_sigma
        )
        loss = loss + attention
        metrics[f"{task}/attention"] = attention
    return loss, ({"loss": loss, **metrics}, model_state)
