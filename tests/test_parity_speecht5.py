"""Numerical parity of models/speecht5.py and models/vocoder.py with Hugging Face at random init.

Tiny HF models are built from configs (nothing is downloaded), every parameter and BatchNorm
statistic is jittered so that biases, norms and the positional scales all matter, converted
with `convert.hf_speecht5`, and run in float32 eval mode on padded batches. HF's speech-decoder
pre-net dropout is on even in eval mode; both sides switch it off (HF by replacing its
`_consistent_dropout` with the identity, ours with prenet_dropout=False).

The encoder's relative-position clip distance is 4, far below the 159 frames / 9 tokens, so
the clipping is exercised. To keep the file fast on a loaded 2-core machine, every test shares
one tiny config: one variable init (`_base`), and one jitted `_apply` whose compilations are
reused across tests (same shapes). The 'layer' conv-norm mode is the shared layers.py code
that tests/test_parity_unispeech.py covers.
"""

import dataclasses
import functools

import flax.linen as nn
import hf_deps
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from unispeech_jax import decoding
from unispeech_jax.convert import hf_speecht5 as conv
from unispeech_jax.models import speecht5, vocoder
from unispeech_jax.models.transformer import unstack_layers

torch = hf_deps.load("torch")
transformers = hf_deps.load("transformers")


ATOL = 1e-4
VOCAB = 13
PAD = 1
SAMPLES = (3200, 2300)  # second example padded
MEL, SPEAKER = 8, 12


def _config():
    return transformers.SpeechT5Config(
        vocab_size=VOCAB,
        hidden_size=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=48,
        decoder_layers=2,
        decoder_attention_heads=4,
        decoder_ffn_dim=48,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 2),
        conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        num_mel_bins=MEL,
        speech_decoder_prenet_units=16,
        speaker_embedding_dim=SPEAKER,
        speech_decoder_postnet_units=16,
        speech_decoder_postnet_layers=3,
        encoder_max_relative_position=4,
        max_speech_positions=300,
        max_text_positions=40,
        reduction_factor=2,
        attn_implementation="eager",
    )


def _jitter(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return model.eval()


def _hf_model(cls_name, seed):
    torch.manual_seed(seed)
    model = _jitter(getattr(transformers, cls_name)(_config()), seed)
    if hasattr(model, "speech_decoder_postnet"):
        model.speecht5.decoder.prenet._consistent_dropout = lambda x, p: x
    return model


@functools.cache
def _base():
    """(ModelArgs, numpy variables) of the shared tiny config, initialised once."""
    module = speecht5.build(conv.model_config_from_hf(_config()), VOCAB)
    return module.args, jax.tree.map(
        np.asarray, speecht5.init_variables(module, jax.random.key(3), unbox=True)
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply(args, method, variables, *inputs, **kwargs):
    """Jitted `SpeechT5.<method>` (compiled once per method and input shapes, for all tests)."""
    module = speecht5.SpeechT5(args, VOCAB)
    return module.apply(variables, *inputs, method=getattr(speecht5.SpeechT5, method), **kwargs)


def _audio():
    rng = np.random.default_rng(0)
    audio = np.zeros((2, SAMPLES[0]), np.float32)
    mask = np.zeros((2, SAMPLES[0]), bool)
    for i, n in enumerate(SAMPLES):
        audio[i, :n] = rng.standard_normal(n)
        mask[i, :n] = True
    return audio, mask


def _tokens(length, pad_from, seed):
    """int32 [2, length] ids in [3, VOCAB); row 1 padded from `pad_from` on."""
    tokens = np.random.default_rng(seed).integers(3, VOCAB, (2, length)).astype(np.int32)
    tokens[1, pad_from:] = PAD
    return tokens


def _t(x):
    return torch.from_numpy(np.asarray(x))


def _close(ours, theirs, what, valid=None):
    ours = np.asarray(ours)
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    if valid is not None:
        ours, theirs = ours[valid], theirs[valid]
    err = float(np.max(np.abs(ours - theirs)))
    print(f"{what}: max abs err {err:.2e}")
    np.testing.assert_allclose(
        ours, theirs, rtol=0, atol=ATOL, err_msg=f"{what}: max abs err {err:.2e}"
    )
    return err


def _ours(model, scan=True):
    """(ModelArgs, variables) converted from `model`, layer stacks scanned or `layers_i`."""
    args, base = _base()
    model_cfg, variables = conv.from_hf(model, base=base, scan_layers=scan)
    assert speecht5.ModelArgs.from_config(model_cfg) == dataclasses.replace(args, scan_layers=scan)
    assert ("layers" in variables["params"]["encoder"]) == scan
    return speecht5.ModelArgs.from_config(model_cfg), variables


@pytest.mark.parametrize("scan", [True, False])
def test_speech_to_text_parity(scan):
    model = _hf_model("SpeechT5ForSpeechToText", seed=1)
    args, variables = _ours(model, scan)
    audio, mask = _audio()
    tokens = _tokens(7, 5, seed=1)
    with torch.no_grad():
        ref = model(
            _t(audio),
            attention_mask=_t(mask).long(),
            decoder_input_ids=_t(tokens).long(),
            decoder_attention_mask=_t(tokens != PAD).long(),
        )
    enc = _apply(args, "encode_speech", variables, audio, mask)
    logits, _ = _apply(args, "decode_text", variables, tokens, enc["hidden"], enc["valid"])
    valid = np.asarray(enc["valid"])
    assert (
        valid.sum(1).tolist()
        == model.speecht5.encoder.prenet._get_feat_extract_output_lengths(_t(SAMPLES)).tolist()
    )
    _close(enc["hidden"], ref.encoder_last_hidden_state, "S2T encoder output", valid)
    _close(logits, ref.logits, "S2T text logits", tokens != PAD)


@pytest.mark.parametrize("pad", [0, 2])
def test_speech_to_text_parity_with_another_pad_token_id(pad):
    """HF numbers the speech encoder's sinusoid positions by comparing the padding flags with
    pad_token_id: with 0 the real frames get none (the first import of such a config was off
    by 0.6 relative at the encoder output), with 2 the padding frames get some too."""
    config = _config()
    config.pad_token_id = pad
    torch.manual_seed(1)
    model = _jitter(transformers.SpeechT5ForSpeechToText(config), 1)
    model_cfg, variables = conv.from_hf(model, base=_base()[1])
    args = speecht5.ModelArgs.from_config(model_cfg)
    assert args.pad_token_id == pad
    audio, mask = _audio()
    tokens = _tokens(7, 5, seed=1)
    tokens[1, 5:] = pad
    with torch.no_grad():
        ref = model(
            _t(audio),
            attention_mask=_t(mask).long(),
            decoder_input_ids=_t(tokens).long(),
            decoder_attention_mask=_t(tokens != pad).long(),
        )
    enc = _apply(args, "encode_speech", variables, audio, mask)
    logits, _ = _apply(args, "decode_text", variables, tokens, enc["hidden"], enc["valid"])
    _close(enc["hidden"], ref.encoder_last_hidden_state, f"pad {pad} encoder", enc["valid"])
    _close(logits, ref.logits, f"pad {pad} text logits", tokens != pad)


def _speech_decoder_refs(model, inputs, mask, mel_in, speaker):
    """HF (encoder output, mel before post-net, mel after post-net, stop logits)."""
    dec = {"decoder_input_values": _t(mel_in), "speaker_embeddings": _t(speaker)}
    with torch.no_grad():
        out = model.speecht5(input_values=inputs, attention_mask=mask, **dec)
        before, after, stop = model.speech_decoder_postnet(out.last_hidden_state)
        full = model(inputs, attention_mask=mask, **dec)
    np.testing.assert_array_equal(
        full.spectrogram.numpy(), after.numpy()
    )  # the public output is the same
    return out.encoder_last_hidden_state, before, after, stop


def _speech_inputs(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, 6, MEL)).astype(np.float32), rng.standard_normal(
        (2, SPEAKER)
    ).astype(np.float32)


def _run_speech_decoder(args, variables, enc, mel_in, speaker):
    out, _ = _apply(args, "decode_speech", variables, mel_in, speaker, enc["hidden"], enc["valid"])
    after = _apply(args, "postnet", variables, out["mel_before"])
    return out["mel_before"], after, out["stop_logits"]


def test_text_to_speech_parity():
    model = _hf_model("SpeechT5ForTextToSpeech", seed=2)
    args, variables = _ours(model)
    tokens = _tokens(9, 6, seed=2)
    token_mask = tokens != PAD
    mel_in, speaker = _speech_inputs(3)
    enc_ref, before, after, stop = _speech_decoder_refs(
        model, _t(tokens).long(), _t(token_mask).long(), mel_in, speaker
    )
    enc = _apply(args, "encode_text", variables, tokens, token_mask)
    _close(enc["hidden"], enc_ref, "TTS encoder output", token_mask)
    ours = _run_speech_decoder(args, variables, enc, mel_in, speaker)
    _close(ours[0], before, "TTS mel before post-net")
    _close(ours[1], after, "TTS mel after post-net")
    _close(ours[2], stop, "TTS stop logits")


def test_speech_to_speech_parity():
    model = _hf_model("SpeechT5ForSpeechToSpeech", seed=3)
    args, variables = _ours(model)
    audio, mask = _audio()
    mel_in, speaker = _speech_inputs(4)
    enc_ref, before, after, stop = _speech_decoder_refs(
        model, _t(audio), _t(mask).long(), mel_in, speaker
    )
    enc = _apply(args, "encode_speech", variables, audio, mask)
    _close(enc["hidden"], enc_ref, "S2S encoder output", np.asarray(enc["valid"]))
    ours = _run_speech_decoder(args, variables, enc, mel_in, speaker)
    _close(ours[0], before, "S2S mel before post-net")
    _close(ours[1], after, "S2S mel after post-net")
    _close(ours[2], stop, "S2S stop logits")


def test_vocoder_parity():
    config = transformers.SpeechT5HifiGanConfig(
        model_in_dim=MEL,
        upsample_initial_channel=16,
        upsample_rates=(2, 3),
        upsample_kernel_sizes=(4, 7),
        resblock_kernel_sizes=(3, 5),
        resblock_dilation_sizes=((1, 3), (1, 2)),
        normalize_before=True,
    )
    torch.manual_seed(5)
    model = _jitter(transformers.SpeechT5HifiGan(config), 5)
    with torch.no_grad():
        model.mean.copy_(torch.randn(MEL))
        model.scale.copy_(0.5 + torch.rand(MEL))
    mel = np.random.default_rng(6).standard_normal((2, 10, MEL)).astype(np.float32)
    with torch.no_grad():
        ref = model(_t(mel))
    cfg, params = conv.vocoder_from_hf(model)
    wave = jax.jit(vocoder.build(cfg).apply)({"params": params}, mel)
    assert wave.shape == (2, 10 * 6)
    _close(wave, ref, "vocoder waveform")
    back = conv.vocoder_to_hf(params)
    assert back.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(back[key].numpy(), value.numpy(), err_msg=key)


@pytest.mark.parametrize("hf_class", sorted(conv.HF_CLASSES))
def test_round_trip_exact(hf_class):
    """ours → HF → ours is bit-exact for every parameter the class has."""
    variables = _base()[1]
    variables = {
        **variables,
        "batch_stats": jax.tree.map(lambda x: x + np.float32(0.25), variables["batch_stats"]),
    }
    hf_model = getattr(transformers, hf_class)(_config())
    state = conv.to_hf(variables, hf_class)
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    # Parts the class lacks come from a different base, so a leak would show up as a mismatch.
    other = jax.tree.map(lambda x: x + np.float32(1.0), variables)
    _, back = conv.from_hf(hf_model, base=other)
    prefixes = conv._prefixes(*conv.HF_CLASSES[hf_class])
    has_text = hf_class != "SpeechT5ForSpeechToSpeech"
    compared = 0
    for path, value in traverse_util.flatten_dict(variables).items():
        in_class = conv._hf_key(path[1:], prefixes) is not None or (
            path[1] == "embed_tokens" and has_text
        )
        want = value if in_class else value + np.float32(1.0)
        np.testing.assert_array_equal(
            traverse_util.flatten_dict(back)[path], want, err_msg=str(path)
        )
        compared += in_class
    assert compared > 40


def test_relative_position_bias_matches_definition():
    """logits[i, j] gain (q_i/sqrt(d)) · E[clip(i − j, −M, M−1) + M], for every pair."""
    t, m, hd = 11, 3, 4
    table = np.random.default_rng(7).standard_normal((2 * m, hd)).astype(np.float32)
    gathered = speecht5.RelativePositionalEncoding(hd, m).apply({"params": {"pe_k": table}}, t)
    for i in range(t):
        for j in range(t):
            np.testing.assert_array_equal(gathered[i, j], table[min(max(i - j, -m), m - 1) + m])
    # inside the attention: with zero keys the logits are exactly the relative term
    attn = speecht5.Attention(8, 2)
    x = jnp.asarray(np.random.default_rng(8).standard_normal((1, t, 8)), jnp.float32)
    params = nn.meta.unbox(
        attn.init(jax.random.key(0), x, x, jnp.ones((1, 1, 1, t), bool))["params"]
    )
    params = jax.tree.map(np.asarray, params)
    params["k_proj"] = {
        "kernel": np.zeros((8, 8), np.float32),
        "bias": np.zeros(8, np.float32),
    }
    _, state = attn.apply(
        {"params": params},
        x,
        x,
        jnp.ones((1, 1, 1, t), bool),
        gathered,
        capture_intermediates=lambda mdl, name: name == "__call__",
    )
    q = (np.asarray(x[0]) @ params["q_proj"]["kernel"] + params["q_proj"]["bias"]).reshape(
        t, 2, hd
    ) / np.sqrt(hd)
    want = np.einsum("qhd,qkd->hqk", q, np.asarray(gathered))
    probs = np.exp(want - want.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    v = (np.asarray(x[0]) @ params["v_proj"]["kernel"] + params["v_proj"]["bias"]).reshape(t, 2, hd)
    out = (
        np.einsum("hqk,khd->qhd", probs, v).reshape(t, 8) @ params["out_proj"]["kernel"]
        + params["out_proj"]["bias"]
    )
    np.testing.assert_allclose(state["intermediates"]["__call__"][0][0][0], out, atol=1e-5)


@pytest.mark.parametrize("scan", [True, False])
def test_incremental_decoding_equals_full_sequence(scan):
    """Step-by-step decoding with the KV cache reproduces teacher-forced decoding (text and
    speech), with the layers scanned (one stacked cache) or not (a cache per layer)."""
    args, variables = _base()
    if not scan:
        args = dataclasses.replace(args, scan_layers=False)
        variables = unstack_layers(variables)
    # Jittered so that attention is far from uniform and the history visibly matters.
    rng = np.random.default_rng(11)
    variables = jax.tree.map(
        lambda x: x + 0.3 * rng.standard_normal(x.shape).astype(np.float32), variables
    )
    audio, mask = _audio()
    tokens = _tokens(7, 7, seed=9)
    mel_in, speaker = _speech_inputs(10)
    enc = _apply(args, "encode_speech", variables, audio, mask)
    logits, _ = _apply(args, "decode_text", variables, tokens, enc["hidden"], enc["valid"])
    full, _ = _apply(args, "decode_speech", variables, mel_in, speaker, enc["hidden"], enc["valid"])

    cache = speecht5.init_cache(args, 2, 8)
    steps = []
    for i in range(tokens.shape[1]):
        step, cache = _apply(
            args,
            "decode_text",
            variables,
            tokens[:, i : i + 1],
            enc["hidden"],
            enc["valid"],
            cache=cache,
        )
        steps.append(step)
    assert int(cache["index"]) == tokens.shape[1]
    err = float(np.max(np.abs(np.concatenate(steps, 1) - logits)))
    print(f"incremental text logits: max abs err {err:.2e}")
    assert err < 1e-5

    cache = speecht5.init_cache(args, 2, 8)
    mels, stops = [], []
    for i in range(mel_in.shape[1]):
        out, cache = _apply(
            args,
            "decode_speech",
            variables,
            mel_in[:, i : i + 1],
            speaker,
            enc["hidden"],
            enc["valid"],
            cache=cache,
        )
        mels.append(out["mel_before"])
        stops.append(out["stop_logits"])
    np.testing.assert_allclose(np.concatenate(mels, 1), full["mel_before"], atol=1e-5)
    np.testing.assert_allclose(np.concatenate(stops, 1), full["stop_logits"], atol=1e-5)
    # and the cache is really used: a different history changes the last step
    cache = speecht5.init_cache(args, 2, 8)
    _, cache = _apply(
        args,
        "decode_speech",
        variables,
        mel_in[:, :5] + 1.0,
        speaker,
        enc["hidden"],
        enc["valid"],
        cache=cache,
    )
    out, _ = _apply(
        args,
        "decode_speech",
        variables,
        mel_in[:, 5:],
        speaker,
        enc["hidden"],
        enc["valid"],
        cache=cache,
    )
    assert np.max(np.abs(out["mel_before"] - mels[-1])) > 1e-2


def test_prenet_dropout_is_explicit_and_shared_by_the_batch():
    args, variables = _base()
    prenet = speecht5.SpeechDecoderPrenet(args)
    params = {"params": variables["params"]["speech_decoder_prenet"]}
    mel = jnp.broadcast_to(
        jnp.asarray(np.random.default_rng(1).standard_normal((1, 5, MEL)), jnp.float32),
        (2, 5, MEL),
    )
    off_a = prenet.apply(params, mel)
    off_b = prenet.apply(params, mel)
    np.testing.assert_array_equal(off_a, off_b)
    on = prenet.apply(params, mel, prenet_dropout=True, rngs={"prenet": jax.random.key(1)})
    again = prenet.apply(params, mel, prenet_dropout=True, rngs={"prenet": jax.random.key(1)})
    other = prenet.apply(params, mel, prenet_dropout=True, rngs={"prenet": jax.random.key(2)})
    np.testing.assert_array_equal(on, again)
    assert not np.allclose(on, off_a) and not np.allclose(on, other)
    np.testing.assert_array_equal(on[0], on[1])  # one mask for the whole batch


def test_cross_modal_quantizer_replaces_a_fraction_of_valid_positions():
    args, variables = _base()
    module = speecht5.SpeechT5(args, VOCAB)
    hidden = jnp.asarray(np.random.default_rng(2).standard_normal((4, 200, 32)), jnp.float32)
    valid = jnp.arange(200)[None, :] < jnp.array([[200], [150], [100], [50]])
    out = module.apply(
        variables,
        hidden,
        valid,
        2.0,
        True,
        method=speecht5.SpeechT5.cross_modal_quantize,
        rngs={"gumbel": jax.random.key(0), "vq": jax.random.key(1)},
    )
    replaced = np.asarray(out["replaced"])
    assert not replaced[~np.asarray(valid)].any()
    assert 0.05 < replaced.sum() / np.asarray(valid).sum() < 0.15
    changed = np.any(np.asarray(out["hidden"]) != np.asarray(hidden), axis=-1)
    np.testing.assert_array_equal(changed, replaced)
    assert 2.0 <= float(out["perplexity"]) <= 2 * module.args.num_codevectors_per_group
    evaluated = module.apply(
        variables, hidden, valid, method=speecht5.SpeechT5.cross_modal_quantize
    )
    np.testing.assert_array_equal(evaluated["hidden"], hidden)


# --------------------------------------------------------------------------------------------
# Fine-tuning losses (model.task 'asr' / 'tts') against HF's `loss` given labels
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0,))
def _task_loss(args, variables, batch):
    """Eval-mode (loss, metrics) of `speecht5.loss_fn` for args.task."""
    module = speecht5.SpeechT5(args, VOCAB)
    model_state = {"batch_stats": variables["batch_stats"]}
    loss, (metrics, _) = speecht5.loss_fn(
        module, variables["params"], batch, jax.random.key(0), 0, False, model_state
    )
    return loss, metrics


def _close_loss(ours, theirs, what):
    theirs = float(theirs)
    print(f"{what}: ours {float(ours):.6f} HF {theirs:.6f}")
    np.testing.assert_allclose(float(ours), theirs, rtol=1e-4, err_msg=what)


def test_asr_loss_matches_speech_to_text_loss():
    """Teacher-forced cross-entropy on padded speech and padded labels (HF: -100)."""
    model = _hf_model("SpeechT5ForSpeechToText", seed=4)
    args, variables = _ours(model)
    audio, mask = _audio()
    labels = _tokens(7, 5, seed=4)
    valid = labels != PAD
    with torch.no_grad():
        want = model(
            _t(audio),
            attention_mask=_t(mask).long(),
            labels=_t(np.where(valid, labels, -100)).long(),
        ).loss
    batch = dict(
        audio=audio, audio_mask=mask, text=labels, text_mask=valid, weight=np.ones(2, np.float32)
    )
    loss, metrics = _task_loss(dataclasses.replace(args, task="asr"), variables, batch)
    _close_loss(loss, want, "ASR loss")
    assert 0.0 <= float(metrics["asr/accuracy"]) <= 1.0


@pytest.mark.parametrize("speaker,scan", [(True, True), (False, True), (True, False)])
def test_tts_loss_matches_text_to_speech_loss(speaker, scan):
    """L1 + stop BCE + guided attention on padded text and padded mel targets (HF: -100), with
    and without a speaker embedding."""
    model = _hf_model("SpeechT5ForTextToSpeech", seed=5)
    assert model.config.use_guided_attention_loss  # HF's default: its loss includes it
    args, variables = _ours(model, scan)
    tokens = _tokens(9, 6, seed=5)
    token_mask = tokens != PAD
    rng = np.random.default_rng(5)
    mel_mask = np.arange(12)[None, :] < np.array([[12], [8]])  # whole groups of r = 2
    mel = np.where(mel_mask[..., None], rng.standard_normal((2, 12, MEL)), 0.0).astype(np.float32)
    embedding = rng.standard_normal((2, SPEAKER)).astype(np.float32)
    with torch.no_grad():
        want = model(
            _t(tokens).long(),
            attention_mask=_t(token_mask).long(),
            labels=_t(np.where(mel_mask[..., None], mel, -100.0).astype(np.float32)),
            decoder_attention_mask=_t(mel_mask).long(),
            speaker_embeddings=_t(embedding) if speaker else None,
        ).loss
    batch = dict(
        text=tokens, text_mask=token_mask, mel=mel, mel_mask=mel_mask, weight=np.ones(2, np.float32)
    )
    if speaker:
        batch["speaker_embedding"] = embedding
    loss, metrics = _task_loss(dataclasses.replace(args, task="tts"), variables, batch)
    _close_loss(loss, want, f"TTS loss (speaker {speaker})")
    assert float(metrics["tts/attention"]) > 0


def test_greedy_asr_matches_hf_generate():
    """Our cached greedy loop emits HF's greedy tokens (pad after </s>, as HF pads)."""
    model = _hf_model("SpeechT5ForSpeechToText", seed=7)
    # A random decoder predicts its start token or pad at once; stronger decoder weights and
    # silent ids 0 and 1 give outputs that depend on the history and end at different steps
    # (here 9 9 9 4 </s> and </s>).
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "decoder" in name and "norm" not in name:
                p.add_(0.5 * torch.randn(p.shape, generator=gen))
        model.speecht5.decoder.prenet.embed_tokens.weight[:2] = 0
    args, variables = _ours(model)
    audio, mask = _audio()
    steps = 8
    with torch.no_grad():
        want = model.generate(
            _t(audio),
            attention_mask=_t(mask).long(),
            max_new_tokens=steps,
            num_beams=1,
            do_sample=False,
        ).numpy()[:, 1:]  # HF's first column is the start token
    want = np.pad(want, ((0, 0), (0, steps - want.shape[1])), constant_values=PAD)
    assert want[0, 3] != want[0, 0] and want[1, 0] == 2 and want[1, 1] == PAD
    module = speecht5.SpeechT5(args, VOCAB)
    got = jax.jit(lambda v, a, m: decoding.speecht5.search(module, v, a, m, max_length=steps))(
        variables, audio, mask
    )
    # Our hypotheses leave out the end token </s> (2); pad follows them, as in HF's rows.
    np.testing.assert_array_equal(np.asarray(got["tokens"][:, 0]), np.where(want == 2, PAD, want))
