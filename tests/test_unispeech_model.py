"""UniSpeech model family: shapes, scan equivalence, objectives, padding, FLOP counting."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from unispeech_jax.convert import hf
from unispeech_jax.models import layers, unispeech

VOCAB = 12
B, S, L = 3, 8000, 6


def tiny_cfg(**overrides):
    cfg = unispeech.default_config()
    cfg.update(
        dict(
            conv_dim=(32,) * 7,
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            intermediate_size=64,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            num_codevectors_per_group=16,
            codevector_dim=32,
            proj_codevector_dim=24,
            num_negatives=8,
            mask_time_length=3,
        )
    )
    cfg.update(overrides)
    return cfg


def make_batch(
    lengths=(8000, 6000, 4000), labelled=(1.0, 0.0, 1.0), weight=(1.0, 1.0, 1.0), seed=0, samples=S
):
    rng = np.random.default_rng(seed)
    n = len(lengths)
    audio = np.zeros((n, samples), np.float32)
    mask = np.zeros((n, samples), bool)
    for i, length in enumerate(lengths):
        audio[i, :length] = rng.standard_normal(length)
        mask[i, :length] = True
    phones = rng.integers(2, VOCAB, (n, L)).astype(np.int32)
    phones_mask = np.ones((n, L), bool)
    phones_mask[:, 4:] = np.arange(n)[:, None] % 2 == 0  # odd examples have 4 labels
    lab = np.asarray(labelled, np.float32)
    phones = np.where(lab[:, None] > 0, phones, 0)
    phones_mask &= lab[:, None] > 0
    return {
        "audio": audio,
        "audio_mask": mask,
        "phones": phones,
        "phones_mask": phones_mask,
        "labelled": lab,
        "weight": np.asarray(weight, np.float32),
    }


def build(**overrides):
    cfg = tiny_cfg(**overrides)
    module = unispeech.build(cfg, VOCAB)
    return cfg, module, unispeech.init_params(module, jax.random.key(0), unbox=True)


# Modules are hashable, so one jitted function serves every test (compiled once per module/shape).
def _loss_and_metrics(module, params, batch, rng, step, train):
    loss, (metrics, _) = unispeech.loss_fn(module, params, batch, rng, step, train)
    return loss, metrics


loss = jax.jit(_loss_and_metrics, static_argnums=(0, 5))
predict = jax.jit(unispeech.predict_fn, static_argnums=0)


def frames(samples):
    return int(layers.conv_output_lengths(samples, (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)))


@pytest.mark.parametrize("projection", ["transpose", "standard"])
def test_pretrain_output_shapes(projection):
    cfg, module, params = build(mixed_ctc_projection=projection)
    batch = make_batch()
    t = frames(S)
    mask_time = np.zeros((B, t), bool)
    mask_time[:, 2:5] = True
    rngs = {"dropout": jax.random.key(1), "gumbel": jax.random.key(2), "mixed": jax.random.key(3)}
    forward = jax.jit(
        lambda p, b, m: module.apply(
            {"params": p},
            b["audio"],
            b["audio_mask"],
            m,
            1.5,
            True,
            method=unispeech.UniSpeech.pretrain,
            rngs=rngs,
        )
    )
    out = forward(params, batch, mask_time)
    space = 32 if projection == "transpose" else 24
    assert out["pred"].shape == (B, t, space)
    assert out["targets"].shape == (B, t, space)
    assert out["hidden"].shape == (B, t, 32)
    assert out["code_ids"].shape == (B, t, 2)
    assert out["ctc_logits"].shape == (B, t, VOCAB)
    assert out["perplexity"].shape == ()
    np.testing.assert_array_equal(
        out["frame_valid"].sum(1), [frames(n) for n in (8000, 6000, 4000)]
    )
    logits, valid = predict(module, params, batch)
    assert logits.shape == (B, t, VOCAB) and valid.shape == (B, t)


def test_ctc_output_shapes_and_params():
    cfg, module, params = build(objective="ctc")
    assert "lm_head" in params and "quantizer" not in params and "ctc_proj" not in params
    assert params["encoder"]["layers"]["attention"]["q_proj"]["kernel"].shape == (2, 32, 32)
    logits, valid = predict(module, params, make_batch())
    assert logits.shape == (B, frames(S), VOCAB) and valid.dtype == jnp.bool_


@pytest.mark.parametrize("objective", ["pretrain", "ctc"])
def test_scan_and_unrolled_layers_agree(objective):
    cfg, module, params = build(objective=objective, scan_layers=True)
    cfg_u = tiny_cfg(objective=objective, scan_layers=False)
    module_u = unispeech.build(cfg_u, VOCAB)
    params_u = hf.stack_layers(hf.unstack_layers(params), scan_layers=False)
    assert "layers_1" in params_u["encoder"]
    batch = make_batch()
    a, _ = predict(module, params, batch)
    b, _ = predict(module_u, params_u, batch)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # and the training loss (dropout off, so rng streams line up trivially)
    la, _ = loss(module, params, batch, jax.random.key(5), 10, False)
    lb, _ = loss(module_u, params_u, batch, jax.random.key(5), 10, False)
    np.testing.assert_allclose(la, lb, rtol=1e-5)


@pytest.mark.parametrize(
    "objective,projection,remat",
    [
        ("pretrain", "transpose", "none"),
        ("pretrain", "standard", "dots_saveable"),
        ("ctc", "transpose", "per_layer"),
    ],
)
def test_loss_and_grads_finite_under_jit(objective, projection, remat):
    cfg, module, params = build(
        objective=objective,
        mixed_ctc_projection=projection,
        remat=remat,
        mask_channel_prob=0.2 if objective == "ctc" else 0.0,
    )
    # the last example is batch padding: empty audio, weight 0
    batch = make_batch(lengths=(8000, 6000, 0), weight=(1.0, 1.0, 0.0))
    step = jax.jit(
        jax.value_and_grad(
            lambda p, b, r: _loss_and_metrics(module, p, b, r, 100, True), has_aux=True
        )
    )
    (loss, metrics), grads = step(params, batch, jax.random.key(7))
    assert np.isfinite(loss) and loss > 0
    for name, value in metrics.items():
        assert np.ndim(value) == 0 and np.isfinite(value), name
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0
    if objective == "pretrain":
        for key in (
            "loss",
            "contrastive",
            "diversity",
            "ctc",
            "code_perplexity",
            "temperature",
            "accuracy",
            "masked_fraction",
        ):
            assert key in metrics
        assert 0.0 < metrics["masked_fraction"] < 1.0
        np.testing.assert_allclose(metrics["temperature"], 2.0 * 0.999995**100, rtol=1e-5)


def test_unlabelled_examples_contribute_no_ctc():
    cfg, module, params = build()
    batch = make_batch(labelled=(1.0, 0.0, 1.0))
    other = dict(batch)
    other["phones"] = batch["phones"].copy()
    other["phones"][1] = 5  # labels of the unlabelled example must not matter...
    other["phones_mask"] = batch["phones_mask"].copy()
    other["phones_mask"][1] = True  # ...even if a careless pipeline left a mask on
    la, ma = loss(module, params, batch, jax.random.key(3), 0, True)
    lb, mb = loss(module, params, other, jax.random.key(3), 0, True)
    np.testing.assert_allclose(la, lb, rtol=1e-6)
    np.testing.assert_allclose(ma["ctc"], mb["ctc"], rtol=1e-6)

    # a fully unlabelled batch is the pure contrastive + diversity objective: no gradient to the CTC head
    unlabelled = make_batch(labelled=(0.0, 0.0, 0.0))
    grads = jax.jit(
        jax.grad(lambda p: unispeech.loss_fn(module, p, unlabelled, jax.random.key(3), 0, True)[0])
    )(params)
    assert float(jnp.max(jnp.abs(grads["ctc_proj"]["kernel"]))) == 0.0
    total, metrics = loss(module, params, unlabelled, jax.random.key(3), 0, True)
    expected = metrics["contrastive"] + cfg.diversity_loss_weight * metrics["diversity"]
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_labelled_weighting_follows_alpha():
    """A labelled example's loss is α·CTC + (1−α)·(contrastive + w_d·diversity), per masked frame."""
    cfg, module, params = build(ctc_weight=0.3)
    batch = make_batch(lengths=(8000,), labelled=(1.0,), weight=(1.0,))
    batch["phones_mask"][0] = True
    total, m = loss(module, params, batch, jax.random.key(4), 0, True)
    masked = m["masked_fraction"] * frames(8000)
    expected = 0.3 * m["ctc"] / masked + 0.7 * (m["contrastive"] + 0.1 * m["diversity"])
    np.testing.assert_allclose(total, expected, rtol=1e-4)


def test_alpha_zero_is_contrastive_only_even_for_labelled_examples():
    """α = 0 (the cross-lingual experiment's contrastive arm) computes no CTC: labelled
    examples give the contrastive + diversity objective and the CTC head no gradient."""
    cfg, module, params = build(ctc_weight=0.0)
    batch = make_batch(labelled=(1.0, 1.0, 1.0))
    total, m = loss(module, params, batch, jax.random.key(4), 0, True)
    assert "ctc" not in m
    np.testing.assert_allclose(total, m["contrastive"] + 0.1 * m["diversity"], rtol=1e-5)
    grads = jax.jit(
        jax.grad(lambda p: unispeech.loss_fn(module, p, batch, jax.random.key(4), 0, True)[0])
    )(params)
    assert float(jnp.max(jnp.abs(grads["ctc_proj"]["kernel"]))) == 0.0


def test_padding_does_not_change_valid_frames():
    # 'layer' feature norm: every op is per frame or masked, so padding is invisible
    cfg, module, params = build(feat_extract_norm="layer", conv_bias=True)
    short = make_batch(lengths=(5000,), labelled=(0.0,))
    short = {k: v[:, :5000] if k.startswith("audio") else v for k, v in short.items()}
    padded = make_batch(lengths=(5000,), labelled=(0.0,))
    a, va = predict(module, params, short)
    b, vb = predict(module, params, padded)
    n = int(np.sum(va))
    assert n == int(np.sum(vb)) == frames(5000)
    np.testing.assert_allclose(np.asarray(a)[0, :n], np.asarray(b)[0, :n], rtol=1e-5, atol=1e-5)


def test_layerdrop_skips_blocks_only_in_training():
    # layerdrop 1 with every dropout off: in training no block runs, so blocks get no gradient
    cfg, module, params = build(
        objective="ctc",
        layerdrop=1.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        mask_time_prob=0.0,
    )
    batch = make_batch(labelled=(1.0, 1.0, 1.0))
    grad = jax.jit(
        jax.grad(
            lambda p, train: unispeech.loss_fn(module, p, batch, jax.random.key(0), 0, train)[0]
        ),
        static_argnums=1,
    )
    g_train, g_eval = grad(params, True), grad(params, False)
    assert (
        max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_train["encoder"]["layers"]))
        == 0.0
    )
    assert (
        max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_eval["encoder"]["layers"])) > 0.0
    )
    assert float(jnp.max(jnp.abs(g_train["encoder"]["pos_conv_embed"]["weight_v"]))) > 0.0


def test_freeze_feature_encoder_stops_conv_gradient():
    cfg, module, params = build(objective="ctc", freeze_feature_encoder=True)
    batch = make_batch(labelled=(1.0, 1.0, 1.0))
    grad = jax.jit(
        jax.grad(lambda p, s: unispeech.loss_fn(module, p, batch, jax.random.key(0), s, True)[0])
    )
    g = grad(params, 0)
    assert float(jnp.max(jnp.abs(g["feature_extractor"]["conv_layers_0"]["conv"]["kernel"]))) == 0.0
    assert float(jnp.max(jnp.abs(g["encoder"]["layers"]["attention"]["q_proj"]["kernel"]))) > 0.0
    assert float(jnp.max(jnp.abs(g["lm_head"]["kernel"]))) > 0.0


def test_dummy_batch_has_the_largest_bucket_shape():
    data = ml_collections.ConfigDict(
        dict(
            bucket_boundaries=(16000, 32000, 48000),
            max_sample_len=48000,
            max_samples_per_batch=200000,
            batch_multiple=2,
            max_label_len=40,
        )
    )
    batch = unispeech.dummy_batch(data)
    assert batch["audio"].shape == (4, 48000) and batch["audio_mask"].dtype == bool
    assert batch["phones"].shape == (4, 40) and batch["phones"].dtype == np.int32
    assert batch["labelled"].shape == batch["weight"].shape == (4,)


def test_unknown_config_key_is_rejected():
    cfg = tiny_cfg()
    cfg.unlock()
    cfg.hiden_size = 3
    with pytest.raises(ValueError, match="hiden_size"):
        unispeech.build(cfg, VOCAB)


@pytest.mark.parametrize("objective", ["pretrain", "ctc"])
def test_flops_match_xla_cost_analysis(objective):
    # unrolled layers: XLA's cost analysis counts a while-loop body once
    cfg = tiny_cfg(
        objective=objective,
        conv_dim=(64,) * 7,
        hidden_size=128,
        intermediate_size=512,
        codevector_dim=64,
        proj_codevector_dim=64,
        scan_layers=False,
        layerdrop=0.0,
    )
    module = unispeech.build(cfg, VOCAB)
    params = unispeech.init_params(module, jax.random.key(0), unbox=True)
    batch = make_batch(lengths=(16000, 16000, 16000), labelled=(1.0, 1.0, 1.0), samples=16000)
    grad = jax.jit(jax.grad(lambda p, b, r: unispeech.loss_fn(module, p, b, r, 0, True)[0]))
    cost = grad.lower(params, batch, jax.random.key(1)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    ours = unispeech.flops_per_batch(cfg, {k: v.shape for k, v in batch.items()}, vocab_size=VOCAB)
    ratio = ours / cost["flops"]
    assert 0.75 < ratio < 1.25, (ours, cost["flops"], ratio)


def test_mixed_ctc_warmup_ramps_the_replacement_probability():
    """replace_warmup_steps: r·min(step/warm-up, 1); at step 0 nothing is replaced."""
    cfg, module, params = build(replace_prob=0.5, replace_warmup_steps=100)
    _, unmixed, _ = build(replace_prob=0.0)
    batch = make_batch(labelled=(1.0, 1.0, 1.0))
    batch["phones_mask"][:, :4] = True
    rng = jax.random.key(5)
    ramps = {
        step: float(loss(module, params, batch, rng, step, True)[1]["replace_prob"])
        for step in (0, 50, 400)
    }
    assert ramps == {0: 0.0, 50: 0.25, 400: 0.5}
    at_start = loss(module, params, batch, rng, 0, True)[1]["ctc"]
    without = loss(unmixed, params, batch, rng, 0, True)[1]["ctc"]
    later = loss(module, params, batch, rng, 400, True)[1]["ctc"]
    np.testing.assert_allclose(at_start, without, rtol=1e-6)
    assert abs(float(later) - float(without)) > 1e-3


# ----------------------------------------------------------------------------- log-mel front end


def test_log_mel_frames_match_the_conv_frames_and_librosa():
    import librosa

    window, hop = layers.receptive_field((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2))
    assert (window, hop) == (400, 320)
    x = np.random.default_rng(0).standard_normal((2, 7000)).astype(np.float32)
    framed = np.asarray(layers.frame_signal(jnp.asarray(x), window, hop))
    assert framed.shape[1] == frames(7000)
    for t in range(framed.shape[1]):  # frame t = the conv stack's receptive field t
        np.testing.assert_array_equal(framed[:, t], x[:, t * hop : t * hop + window])
    ours = np.asarray(layers.log_mel_frames(jnp.asarray(x), window, hop, 80, 16000))
    hann = librosa.filters.get_window("hann", window, fftbins=True)
    power = np.abs(np.fft.rfft(framed[0] * hann, n=512)) ** 2  # [T, 257]
    mel = librosa.feature.melspectrogram(
        S=power.T, sr=16000, n_fft=512, n_mels=80, fmin=0.0, fmax=8000.0
    )  # [80, T]
    np.testing.assert_allclose(ours[0], np.log(mel.T + 1e-10), rtol=1e-4, atol=1e-4)


def test_log_mel_front_end_normalises_per_utterance_and_ignores_padding():
    cfg, module, params = build(objective="ctc", feature_encoder="log_mel", mask_time_prob=0.0)
    assert set(params["feature_extractor"]) == {"conv"}
    short = make_batch(lengths=(5000,), labelled=(1.0,))
    short = {k: v[:, :5000] if k.startswith("audio") else v for k, v in short.items()}
    padded = make_batch(lengths=(5000,), labelled=(1.0,))
    louder = dict(short, audio=short["audio"] * 7.0)  # a gain is one offset per mel bin
    (a, va), (b, vb), (c, _) = (predict(module, params, x) for x in (short, padded, louder))
    n = int(np.sum(va))
    assert n == int(np.sum(vb)) == frames(5000)
    np.testing.assert_allclose(np.asarray(a)[0, :n], np.asarray(b)[0, :n], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-3, atol=1e-3)

    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 9, 5)), jnp.float32)
    valid = jnp.arange(9)[None, :] < jnp.array([[9], [6]])
    y = np.asarray(layers.normalize_utterance(x, valid))
    np.testing.assert_allclose(y[1, :6].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(y[1, :6].std(0), 1.0, atol=1e-3)
    assert (y[1, 6:] == 0).all()


def test_log_mel_front_end_trains_counts_its_flops_and_has_no_hf_counterpart():
    cfg, module, params = build(feature_encoder="log_mel", scan_layers=False, layerdrop=0.0)
    batch = make_batch(lengths=(16000, 16000, 16000), labelled=(1.0, 1.0, 1.0), samples=16000)
    grad = jax.jit(jax.grad(lambda p, b, r: unispeech.loss_fn(module, p, b, r, 0, True)[0]))
    g = grad(params, batch, jax.random.key(1))
    assert float(jnp.max(jnp.abs(g["feature_extractor"]["conv"]["kernel"]))) > 0.0
    cost = grad.lower(params, batch, jax.random.key(1)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    ours = unispeech.flops_per_batch(cfg, {k: v.shape for k, v in batch.items()}, vocab_size=VOCAB)
    assert 0.75 < ours / cost["flops"] < 1.25, (ours, cost["flops"])
    with pytest.raises(ValueError, match="no Hugging Face counterpart"):
        hf.to_hf(params, cfg)
    with pytest.raises(ValueError, match="feature_encoder"):
        unispeech.build(tiny_cfg(feature_encoder="mfcc"), VOCAB)


def test_positional_conv_implementations_agree_with_the_grouped_conv():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 37, 32)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).standard_normal((16, 8, 32)), jnp.float32)
    grouped = jax.lax.conv_general_dilated(
        x, w, (1,), [(8, 8)], dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=4
    )[:, :37]
    cot = jnp.asarray(np.random.default_rng(2).standard_normal(grouped.shape), jnp.float32)

    def grads(conv):
        return jax.grad(lambda x, w: jnp.vdot(conv(x, w), cot), argnums=(0, 1))(x, w)

    reference = grads(
        lambda x, w: jax.lax.conv_general_dilated(
            x, w, (1,), [(8, 8)], dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=4
        )[:, :37]
    )
    # 16 taps: the tap-chunked kernel gradient runs two chunks of 8.
    for impl in (
        layers._same_grouped_conv,
        layers._same_grouped_conv_fft,
        layers._same_grouped_conv_taps,
    ):
        np.testing.assert_allclose(
            impl(x, w, 4), grouped, rtol=1e-4, atol=1e-4, err_msg=impl.__name__
        )
        for got, want in zip(grads(lambda x, w, impl=impl: impl(x, w, 4)), reference):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=impl.__name__)
    with pytest.raises(ValueError, match="pos_conv_impl must be 'auto', 'conv', 'fft' or 'taps'"):
        unispeech.build(tiny_cfg(pos_conv_impl="fast"), VOCAB)


@pytest.mark.parametrize("projection", ["transpose", "standard"])
def test_mixed_ctc_feeds_quantized_vectors_to_a_fraction_r_of_frames(projection):
    """Inside the model: a fraction ≈ r of the frames reach the CTC head as their quantized
    vector in model space (final_proj ∘ project_q, or q2h_proj), the others as the encoder
    output; in eval mode the mixing uses the quantizer's own (argmax) codes."""
    r = 0.3
    cfg, module, params = build(mixed_ctc_projection=projection, replace_prob=r)
    batch = make_batch(lengths=(32000,) * 4, labelled=(1.0,) * 4, samples=32000)
    out, state = module.apply(
        {"params": params},
        batch["audio"],
        batch["audio_mask"],
        None,
        method=unispeech.UniSpeech.pretrain,
        rngs={"mixed": jax.random.key(3)},
        replace_prob=r,
        capture_intermediates=lambda mdl, name: mdl.name == "quantizer" and name == "__call__",
    )
    q = state["intermediates"]["quantizer"]["__call__"][0][0]
    apply = lambda f, x: module.apply({"params": params}, x, method=f)  # noqa: E731
    from_hidden = apply(lambda m, x: m.ctc_proj(x), out["hidden"])
    from_codes = apply(lambda m, x: m.ctc_proj(m._quantized_to_model_space(x)), q)
    close = lambda a, b: np.all(np.isclose(a, b, rtol=1e-4, atol=1e-5), axis=-1)  # noqa: E731
    replaced = close(out["ctc_logits"], from_codes)
    kept = close(out["ctc_logits"], from_hidden)
    assert np.all(replaced != kept)  # every frame is exactly one of the two
    # ~400 frames: the fraction's standard deviation is 0.023.
    assert abs(replaced.mean() - r) < 0.08, replaced.mean()


def test_feature_grad_mult_scales_only_the_conv_stack_gradient():
    """feature_grad_mult multiplies the gradient of every conv-stack parameter (0 freezes
    them) and leaves every other gradient as it was."""
    batch = make_batch(labelled=(1.0, 1.0, 1.0))

    def grads(mult):
        _, module, params = build(objective="ctc", feature_grad_mult=mult)
        return jax.jit(
            jax.grad(lambda p: unispeech.loss_fn(module, p, batch, jax.random.key(0), 0, True)[0])
        )(params)

    full, tenth, frozen = grads(1.0), grads(0.1), grads(0.0)
    conv = lambda g: g["feature_extractor"]  # noqa: E731
    rest = lambda g: {k: v for k, v in g.items() if k != "feature_extractor"}  # noqa: E731
    # Rounding differs: equal to 1e-4 of each array's largest gradient, or of the model's for
    # arrays whose gradient is rounding noise (the attention key bias: its true one is zero).
    floor = 1e-6 * max(float(jnp.abs(g).max()) for g in jax.tree.leaves(full))
    close = lambda a, b: np.testing.assert_allclose(  # noqa: E731
        a, b, rtol=0, atol=max(1e-4 * float(jnp.abs(b).max()), floor)
    )
    jax.tree.map(lambda a, b: close(a, 0.1 * b), conv(tenth), conv(full))
    jax.tree.map(close, rest(tenth), rest(full))
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(conv(frozen)))
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(conv(full))) > 0.0
