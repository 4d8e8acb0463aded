"""Numerical parity with Hugging Face UniSpeech / Wav2Vec2 at random initialisation.

Small HF models are built from configs (nothing is downloaded), their weights are jittered so
that every bias and norm parameter matters, converted with `convert.hf.from_hf`, and run on
the same padded batch (float32, eval mode). Covered: both feature-encoder norms ('group',
'layer'), both block orders (post-LN, pre-LN = HF do_stable_layer_norm), UniSpeech and
Wav2Vec2 classes (bare model with a given time mask, ForCTC logits, ForPreTraining projected
states and quantized targets), and the exact ours → HF → ours round trip.

HF receives the attention mask in both norm modes: the HF *model* honours it whenever it is
passed (its feature extractor only returns one for 'layer' checkpoints); our model always
masks, so this is the comparable call.
"""

import itertools

import hf_deps
import jax
import numpy as np
import pytest

torch = hf_deps.load("torch")
transformers = hf_deps.load("transformers")

from unispeech_jax.convert import hf  # noqa: E402
from unispeech_jax.models import unispeech  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
VOCAB = 11
SAMPLES = (3200, 2300)  # second example padded


def _hf_config(family, norm, stable, pos_kernel=16):
    cls = transformers.UniSpeechConfig if family == "unispeech" else transformers.Wav2Vec2Config
    kw = dict(
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 2),
        conv_stride=(5, 2, 2),
        conv_bias=norm == "layer",
        feat_extract_norm=norm,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        do_stable_layer_norm=stable,
        num_conv_pos_embeddings=pos_kernel,
        num_conv_pos_embedding_groups=4,
        num_codevector_groups=2,
        num_codevectors_per_group=8,
        codevector_dim=16,
        proj_codevector_dim=12,
        vocab_size=VOCAB,
        mask_time_prob=0.05,
        mask_time_length=2,
        layer_norm_eps=1e-5,
        attn_implementation="eager",
    )
    if family == "unispeech":
        kw["num_ctc_classes"] = VOCAB
    return cls(**kw)


def _jitter(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _batch():
    rng = np.random.default_rng(0)
    audio = np.zeros((2, SAMPLES[0]), np.float32)
    mask = np.zeros((2, SAMPLES[0]), bool)
    for i, n in enumerate(SAMPLES):
        audio[i, :n] = rng.standard_normal(n)
        mask[i, :n] = True
    return audio, mask


def _hf_model(cls_name, config, seed):
    torch.manual_seed(seed)
    return _jitter(getattr(transformers, cls_name)(config), seed)


def _close(ours, theirs, what, valid=None):
    ours, theirs = (
        np.asarray(ours),
        np.asarray(theirs.detach().numpy() if hasattr(theirs, "detach") else theirs),
    )
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    if valid is not None:
        ours, theirs = ours[valid], theirs[valid]
    err = float(np.max(np.abs(ours - theirs)))
    np.testing.assert_allclose(
        ours, theirs, rtol=RTOL, atol=ATOL, err_msg=f"{what}: max abs err {err:.2e}"
    )
    return err


CASES = list(itertools.product(["unispeech", "wav2vec2"], ["group", "layer"], [False, True]))


@pytest.mark.parametrize("family,norm,stable", CASES)
def test_ctc_model_parity(family, norm, stable):
    prefix = "UniSpeech" if family == "unispeech" else "Wav2Vec2"
    config = _hf_config(family, norm, stable, pos_kernel=16 if stable else 15)
    model = _hf_model(f"{prefix}ForCTC", config, seed=1)
    audio, mask = _batch()
    model_cfg, params = hf.from_hf(model, scan_layers=stable)  # exercise both layouts
    module = unispeech.build(model_cfg, hf.vocab_size_from_params(params))

    # Bare encoder with a fixed time mask (mask embedding path), then the CTC head.
    frames = int(model._get_feat_extract_output_lengths(SAMPLES[0]))
    mask_time = np.zeros((2, frames), bool)
    mask_time[:, 3:6] = True
    with torch.no_grad():
        base = getattr(model, family)(
            torch.from_numpy(audio),
            attention_mask=torch.from_numpy(mask).long(),
            mask_time_indices=torch.from_numpy(mask_time),
        )
        logits = model(torch.from_numpy(audio), attention_mask=torch.from_numpy(mask).long()).logits
    out = module.apply(
        {"params": params}, audio, mask, mask_time, method=unispeech.UniSpeech.encode
    )
    valid = np.asarray(out["frame_valid"])
    assert (
        valid.sum(1).tolist()
        == model._get_feat_extract_output_lengths(torch.tensor(SAMPLES)).tolist()
    )
    _close(out["extract_features"], base.extract_features, "extract_features")
    _close(out["hidden"], base.last_hidden_state, "last_hidden_state", valid)
    ours_logits, _ = unispeech.predict_fn(module, params, {"audio": audio, "audio_mask": mask})
    _close(ours_logits, logits, "ctc logits", valid)


@pytest.mark.parametrize(
    "family,norm,stable",
    [
        ("unispeech", "group", False),
        ("unispeech", "layer", True),
        ("wav2vec2", "group", False),
        ("wav2vec2", "layer", True),
    ],
)
def test_pretraining_model_parity(family, norm, stable):
    prefix = "UniSpeech" if family == "unispeech" else "Wav2Vec2"
    config = _hf_config(family, norm, stable)
    model = _hf_model(f"{prefix}ForPreTraining", config, seed=2)
    audio, mask = _batch()
    model_cfg, params = hf.from_hf(model)
    assert model_cfg.objective == "pretrain"
    module = unispeech.build(model_cfg, hf.vocab_size_from_params(params))
    with torch.no_grad():
        ref = model(torch.from_numpy(audio), attention_mask=torch.from_numpy(mask).long())
    out = module.apply(
        {"params": params},
        audio,
        mask,
        None,
        2.0,
        False,
        False,
        method=unispeech.UniSpeech.pretrain,
    )
    valid = np.asarray(out["frame_valid"])
    _close(out["pred"], ref.projected_states, "projected_states", valid)
    _close(out["targets"], ref.projected_quantized_states, "projected_quantized_states", valid)


@pytest.mark.parametrize(
    "family,objective",
    [
        ("unispeech", "pretrain"),
        ("unispeech", "ctc"),
        ("wav2vec2", "pretrain"),
        ("wav2vec2", "ctc"),
    ],
)
def test_round_trip_exact(family, objective):
    config = _hf_config(family, "layer", True)
    model_cfg = hf.model_config_from_hf(config, objective)
    module = unispeech.build(model_cfg, VOCAB)
    params = jax.tree.map(np.asarray, unispeech.init_params(module, jax.random.key(3), unbox=True))

    state = hf.to_hf(params, model_cfg, family=family)
    cls = {"pretrain": "ForPreTraining", "ctc": "ForCTC"}[objective]
    hf_model = getattr(transformers, ("UniSpeech" if family == "unispeech" else "Wav2Vec2") + cls)(
        config
    )
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not missing, missing
    _, back = hf.from_hf(hf_model, objective=objective, scan_layers=True)
    flat_a = hf.unstack_layers(params)
    flat_b = hf.unstack_layers(back)
    for path in flat_a:
        if path.startswith(("q2h_proj", "ctc_proj")) and family == "wav2vec2":
            continue  # no HF counterpart: re-initialised on import
        np.testing.assert_array_equal(flat_a[path], flat_b[path], err_msg=path)

    # scanned and unscanned params export the same state dict; legacy weight-norm names import too
    model_cfg.scan_layers = False
    unscanned = hf.stack_layers(hf.unstack_layers(params), scan_layers=False)
    state2 = hf.to_hf(unscanned, model_cfg, family=family, weight_norm="legacy", as_torch=False)
    _, back2 = hf.from_hf(state2, config, objective=objective, scan_layers=True)
    for path, value in hf.unstack_layers(back2).items():
        if not (path.startswith(("q2h_proj", "ctc_proj")) and family == "wav2vec2"):
            np.testing.assert_array_equal(flat_a[path], value, err_msg=path)


def test_bare_model_state_dict_imports():
    config = _hf_config("unispeech", "group", False)
    model = _hf_model("UniSpeechModel", config, seed=4)
    audio, mask = _batch()
    model_cfg, params = hf.from_hf(model.state_dict(), config, vocab_size=VOCAB)
    assert model_cfg.objective == "ctc"
    module = unispeech.build(model_cfg, VOCAB)
    with torch.no_grad():
        ref = model(torch.from_numpy(audio), attention_mask=torch.from_numpy(mask).long())
    out = module.apply({"params": params}, audio, mask, method=unispeech.UniSpeech.encode)
    _close(
        out["hidden"], ref.last_hidden_state, "last_hidden_state", np.asarray(out["frame_valid"])
    )
    # HF pipelines feed 'group' checkpoints zero-padded audio without a mask: an all-True
    # audio_mask reproduces that call exactly.
    with torch.no_grad():
        unmasked = model(torch.from_numpy(audio))
    full = np.ones_like(mask)
    out = module.apply({"params": params}, audio, full, method=unispeech.UniSpeech.encode)
    _close(out["hidden"], unmasked.last_hidden_state, "last_hidden_state without mask")
