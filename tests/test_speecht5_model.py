"""SpeechT5 in training mode: one pre-training-style step runs, is finite and reaches the params."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from unispeech_jax import losses
from unispeech_jax.models import layers, speecht5

TINY = {
    "conv_dim": (16, 16),
    "conv_kernel": (10, 3),
    "conv_stride": (5, 2),
    "hidden_size": 16,
    "encoder_layers": 1,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 24,
    "decoder_layers": 1,
    "decoder_attention_heads": 2,
    "decoder_ffn_dim": 24,
    "num_conv_pos_embeddings": 8,
    "num_conv_pos_embedding_groups": 2,
    "num_mel_bins": 4,
    "speech_decoder_prenet_units": 8,
    "speaker_embedding_dim": 6,
    "speech_decoder_postnet_units": 8,
    "speech_decoder_postnet_layers": 2,
    "encoder_max_relative_position": 8,
    "num_codevectors_per_group": 5,
    "num_clusters": 7,
    "final_dim": 8,
}


def test_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="hiden_size"):
        speecht5.ModelArgs.from_config({**TINY, "hiden_size": 3})


def test_speech_pretraining_step_has_finite_gradients_everywhere_used():
    # no layerdrop: a skipped one-layer stack would rightly get no gradient
    module = speecht5.build({**TINY, "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0}, 11)
    variables = speecht5.init_variables(module, jax.random.key(0), unbox=True)
    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.standard_normal((2, 800)), jnp.float32)
    audio_mask = jnp.arange(800)[None, :] < jnp.array([[800], [600]])
    mel = jnp.asarray(rng.standard_normal((2, 6, 4)), jnp.float32)
    speaker = jnp.asarray(rng.standard_normal((2, 6)), jnp.float32)

    def forward(self, audio, audio_mask, mel, speaker):
        frames = layers.frame_validity(audio_mask, TINY["conv_kernel"], TINY["conv_stride"])
        mask_time = (jnp.arange(frames.shape[1]) % 3 == 0)[None] & frames
        enc = self.encode_speech(audio, audio_mask, mask_time, train=True)
        cluster = self.cluster_logits(enc["hidden"])
        vq = self.cross_modal_quantize(enc["hidden"], enc["valid"], 2.0, train=True)
        out, _ = self.decode_speech(
            speecht5.shift_spectrograms_right(mel, 2),
            speaker,
            vq["hidden"],
            enc["valid"],
            train=True,
            prenet_dropout=True,
        )
        after = self.postnet(out["mel_before"], train=True)
        targets = jnp.zeros(frames.shape, jnp.int32)
        mlm, _ = losses.masked_prediction_loss(cluster, targets, mask_time)
        l1, bce = losses.spectrogram_loss(
            out["mel_before"], after, out["stop_logits"], mel, jnp.ones((2, 6), bool)
        )
        return mlm + l1 + bce + 0.1 * losses.diversity_loss(vq["perplexity"], 10)

    def loss(params):
        rngs = {k: jax.random.key(i) for i, k in enumerate(("dropout", "gumbel", "vq", "prenet"))}
        value, state = module.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            audio,
            audio_mask,
            mel,
            speaker,
            method=forward,
            rngs=rngs,
            mutable=["batch_stats"],
        )
        return value, state

    (value, state), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    assert np.isfinite(float(value))
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    assert all(np.all(np.isfinite(g)) for _, g in flat)
    # the text side and the quantizer's codebook of unused entries may get zero gradient; the
    # speech path must not
    for part in (
        "speech_encoder_prenet",
        "encoder",
        "decoder",
        "speech_decoder_prenet",
        "speech_decoder_postnet",
        "quantizer",
        "final_proj",
    ):
        total = sum(float(jnp.sum(jnp.abs(g))) for p, g in flat if p[0].key == part)
        assert total > 0, part
    moved = jax.tree.map(
        lambda a, b: float(jnp.max(jnp.abs(a - b))),
        state["batch_stats"],
        variables["batch_stats"],
    )
    assert max(jax.tree.leaves(moved)) > 0  # training-mode BatchNorm updated its statistics


def test_every_task_but_pretraining_has_a_loss_in_tasks():
    from unispeech_jax.models.speecht5.tasks import TASK_LOSSES

    assert set(speecht5.TASKS) == {"pretrain", *TASK_LOSSES}
