"""SpeechT5 fine-tuning (model.task 'asr' / 'tts' / 'st' / 'sid' / 'vc' / 'se') through `step.make_train_step`, the step the
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
    if task in ("asr", "st", "sid", "vc", "se"):  # speech input (st: `text` is the translation)
        audio_mask = np.arange(16_000)[None, :] < np.array([[16_000], [12_000]])
        batch.update(
            audio=np.where(audio_mask, rng.standard_normal((2, 16_000)), 0.0).astype(np.float32),
            audio_mask=audio_mask,
        )
        if task == "sid":  # the speakers instead of a text
            batch = {k: batch[k] for k in ("audio", "audio_mask", "weight")}
            batch["speaker"] = np.array([2, 0], np.int32)
    if task in ("tts", "vc", "se"):
        mel_mask = np.arange(40)[None, :] < np.array([[40], [30]])
        batch.update(
            mel=np.where(mel_mask[..., None], rng.standard_normal((2, 40, 20)), 0.0).astype(
                np.float32
            ),
            mel_mask=mel_mask,
            speaker_embedding=rng.standard_normal((2, 8)).astype(np.float32),
        )
    return batch


@pytest.mark.parametrize("task", ["asr", "tts", "st", "sid", "vc", "se"])
def test_finetuning_steps_lower_the_loss(task):
    config, batch = _config(task), _batch(task)
    if task == "sid":
        config.model.num_speakers = 3
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
    parts = {
        "asr": ("asr/ce", "asr/accuracy"),
        "tts": ("tts/l1", "tts/bce", "tts/attention"),
        "st": ("st/ce", "st/accuracy"),
        "sid": ("sid/ce", "sid/accuracy"),
        "vc": ("vc/l1", "vc/bce", "vc/attention"),
        "se": ("se/l1", "se/bce", "se/attention"),
    }
    assert all(np.isfinite(float(metrics[k])) for k in parts[task])
    moved = jax.tree.map(
        lambda a, b: bool(np.any(a != b)), first_stats, state["model_state"]["batch_stats"]
    )
    # Only the speech-output tasks run the post-net, whose BatchNorm statistics training updates.
    assert any(jax.tree.leaves(moved)) == (task in ("tts", "vc", "se"))
    shapes = {k: v.shape for k, v in batch.items()}
    assert speecht5.flops_per_batch(config.model, shapes) > 0


def test_asr_ctc_head_loss_is_torch_ctc_per_target_token():
    """asr/ctc = torch's CTC (blank <s> = 1, zero_infinity) of the `ctc_proj` head on the encoder
    output for each weight > 0 utterance's text without </s>, summed and divided by those
    target tokens; the loss is CE + ctc_loss_weight · that."""
    torch = pytest.importorskip("torch")
    config = _config("asr")
    config.model.update(ctc_loss_weight=0.5, ctc_blank_id=1)
    batch = _batch("asr")
    lengths = batch["text_mask"].sum(1)
    batch["text"][np.arange(2), lengths - 1] = 2  # each transcript ends with </s>
    batch["weight"] = np.array([1.0, 0.0], np.float32)  # the second row is padding
    module = speecht5.build(config.model, VOCAB)
    variables = speecht5.init_variables(module, jax.random.key(0), batch, unbox=True)
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    loss, (metrics, _) = speecht5.loss_fn(module, params, batch, jax.random.key(1), 0, False, state)

    enc = module.apply(
        variables, batch["audio"], batch["audio_mask"], method=speecht5.SpeechT5.encode_speech
    )
    logits = module.apply(variables, enc["hidden"], method=speecht5.SpeechT5.ctc_logits)
    log_probs = torch.log_softmax(torch.tensor(np.asarray(logits[:1])), -1).transpose(0, 1)
    target = batch["text"][0, : lengths[0] - 1]
    expected = torch.nn.functional.ctc_loss(
        log_probs,
        torch.tensor(target[None]),
        torch.tensor([int(enc["valid"][0].sum())]),
        torch.tensor([len(target)]),
        blank=1,
        reduction="sum",
        zero_infinity=True,
    ).item() / len(target)
    np.testing.assert_allclose(float(metrics["asr/ctc"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(metrics["asr/ce"]) + 0.5 * expected, rtol=1e-5)
    assert "ctc_proj" in params


def test_tts_speaker_table_rows_are_the_speaker_input():
    """With num_speakers rows, a batch's `speaker` index gives the same loss as passing that
    row as the x-vector; -1 (a voice outside the training split) gets the mean row."""
    config = _config("tts")
    config.model.num_speakers = 3
    batch = _batch("tts")
    del batch["speaker_embedding"]
    batch["speaker"] = np.array([2, -1], np.int32)
    module = speecht5.build(config.model, VOCAB)
    variables = speecht5.init_variables(module, jax.random.key(0), batch, unbox=True)
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    table = np.asarray(params["speaker_table"])
    assert table.shape == (3, 8)

    def loss(b):
        return float(speecht5.loss_fn(module, params, b, jax.random.key(1), 0, False, state)[0])

    as_xvectors = dict(batch, speaker_embedding=np.stack([table[2], table.mean(0)]))
    np.testing.assert_allclose(loss(batch), loss(as_xvectors), rtol=1e-6)
    assert loss(batch) != loss(dict(batch, speaker=np.array([0, -1], np.int32)))


def test_speech_to_speech_loss_is_l1_and_bce_of_the_speech_decoder():
    """vc (and se, the same loss) = L1 of mel before + after the post-net + stop BCE (pos
    weight 5), computed here in numpy from the model's outputs on the batch's audio; the
    target speaker's vector changes it."""
    config = _config("vc")
    config.model.use_guided_attention_loss = False
    batch = _batch("vc")
    module = speecht5.build(config.model, VOCAB)
    variables = speecht5.init_variables(module, jax.random.key(0), batch, unbox=True)
    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}

    def loss(task, b):
        config.model.task = task
        m = speecht5.build(config.model, VOCAB)
        value, (metrics, _) = speecht5.loss_fn(m, params, b, jax.random.key(1), 0, False, state)
        return float(value), metrics

    enc = module.apply(variables, batch["audio"], batch["audio_mask"], method="encode_speech")
    shifted = speecht5.shift_spectrograms_right(batch["mel"], 2)
    out = module.apply(
        variables,
        shifted,
        batch["speaker_embedding"],
        enc["hidden"],
        enc["valid"],
        batch["mel_mask"][:, ::2],
        method="decode_mel",
    )
    valid = batch["mel_mask"]
    target = batch["mel"]
    l1 = sum(np.abs(np.asarray(out[k]) - target)[valid].mean() for k in ("mel_before", "mel_after"))
    stop = np.zeros(valid.shape)
    stop[np.arange(2), valid.sum(1) - 1] = 1.0
    x = np.asarray(out["stop_logits"], np.float64)
    bce = -(5.0 * stop * np.log(1 / (1 + np.exp(-x))) + (1 - stop) * np.log(1 / (1 + np.exp(x))))
    value, metrics = loss("vc", batch)
    np.testing.assert_allclose(float(metrics["vc/l1"]), l1, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["vc/bce"]), bce[valid].mean(), rtol=1e-5)
    np.testing.assert_allclose(value, l1 + bce[valid].mean(), rtol=1e-5)
    assert loss("se", batch)[0] == value
    other = dict(batch, speaker_embedding=batch["speaker_embedding"][::-1].copy())
    assert loss("vc", other)[0] != value
