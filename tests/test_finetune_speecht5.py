"""SpeechT5 fine-tuning (model.task 'asr' / 'tts') through `step.make_train_step`, the step the
training loop runs: a few steps on one fixed batch lower the loss. The losses themselves are
checked against Hugging Face in test_parity_speecht5.py."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from unispeech_jax import config as config_lib
from unispeech_jax import optim
from unispeech_jax import step as step_lib
from unispeech_jax.models import speecht5

VOCAB = 20


def _config(task):
    """A one-layer SpeechT5 (one 400-sample / 320-hop conv, width 32) and a fast optimizer."""
    c = config_lib.defaults()
    c.model = speecht5.default_config()
    c.model.update(
        task=task,
        conv_dim=(32,),
        conv_kernel=(400,),
        conv_stride=(320,),
        hidden_size=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        encoder_max_relative_position=16,
        speech_decoder_prenet_units=32,
        speech_decoder_postnet_units=16,
        speech_decoder_postnet_layers=2,
        speaker_embedding_dim=8,
        num_codevectors_per_group=8,
        num_clusters=8,
        final_dim=16,
        num_mel_bins=20,
        mask_time_prob=0.05,
        mask_time_length=5,
    )
    c.total_steps, c.optim.lr, c.optim.warmup_steps = 100, 5e-3, 1
    return c


def _batch(task):
    """Batch of 2, the second example padded; ids in [3, VOCAB) (0-2 are special)."""
    rng = np.random.default_rng(0)
    text = rng.integers(3, VOCAB, (2, 12)).astype(np.int32)
    text_mask = np.arange(12)[None, :] < np.array([[12], [9]])
    batch = {
        "text": np.where(text_mask, text, 1),
        "text_mask": text_mask,
        "weight": np.ones(2, np.float32),
    }
    if task == "asr":
        audio_mask = np.arange(16_000)[None, :] < np.array([[16_000], [12_000]])
        batch.update(
            audio=np.where(audio_mask, rng.standard_normal((2, 16_000)), 0.0).astype(np.float32),
            audio_mask=audio_mask,
        )
    else:
        mel_mask = np.arange(40)[None, :] < np.array([[40], [30]])
        batch.update(
            mel=np.where(mel_mask[..., None], rng.standard_normal((2, 40, 20)), 0.0).astype(
                np.float32
            ),
            mel_mask=mel_mask,
            speaker_embedding=rng.standard_normal((2, 8)).astype(np.float32),
        )
    return batch


@pytest.mark.parametrize("task", ["asr", "tts"])
def test_finetuning_steps_lower_the_loss(task):
    config, batch = _config(task), _batch(task)
    module = speecht5.build(config.model, VOCAB)
    tx, lr_fn = optim.make(config.optim, config.total_steps)
    state = nn.meta.unbox(
        jax.jit(step_lib.make_init_fn(speecht5, module, tx, batch))(jax.random.key(0))
    )
    step = jax.jit(step_lib.make_train_step(speecht5, module, tx, lr_fn, config, frozen=None))
    first_stats = state["model_state"]["batch_stats"]
    losses = []
    for _ in range(16):
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    print(task, [round(v, 3) for v in losses])
    # The pre-net's always-on dropout makes single TTS steps noisy: compare the last three.
    assert np.all(np.isfinite(losses)) and np.mean(losses[-3:]) < 0.9 * losses[0]
    assert int(state["step"]) == 16 and int(state["nonfinite"]) == 0
    parts = {"asr": ("asr/ce", "asr/accuracy"), "tts": ("tts/l1", "tts/bce", "tts/attention")}
    assert all(np.isfinite(float(metrics[k])) for k in parts[task])
    moved = jax.tree.map(
        lambda a, b: bool(np.any(a != b)), first_stats, state["model_state"]["batch_stats"]
    )
    # Only TTS runs the post-net, whose BatchNorm statistics training updates.
    assert any(jax.tree.leaves(moved)) == (task == "tts")
    shapes = {k: v.shape for k, v in batch.items()}
    assert speecht5.flops_per_batch(config.model, shapes) > 0
