"""Hugging Face transformers ⇄ unispeech_jax weights for SpeechT5 and its HiFi-GAN vocoder.

    model_cfg, variables = from_hf(hf_model)                  # SpeechT5For{SpeechToText,TextToSpeech,SpeechToSpeech}
    state_dict = to_hf(variables, "SpeechT5ForTextToSpeech")
    vocoder_cfg, params = vocoder_from_hf(hf_hifigan);  vocoder_to_hf(params)

`variables` = {'params', 'batch_stats'} of `models.speecht5.SpeechT5` (scanned layer stacks or
`layers_i`, either way; HF numbers the layers as the latter), which holds every
pre/post-net. One HF class fills the parts it has; the rest (the other modality's nets, the
cross-modal quantizer and masked-prediction head that HF lacks) are freshly initialised from
`seed` and logged. Exporting writes only the parts the target class has.

Our parameter tree mirrors HF names, so a key is built from a path by: top module → HF prefix
(which depends on the class: HF's `speecht5.encoder.prenet` is the speech or the text pre-net),
`name_i` → `name.i`, and a leaf rule:
  * Dense kernel [in, out] ↔ torch Linear weight [out, in]; conv kernel [K, in, out] ↔ torch
    Conv1d weight [out, in, K]; LayerNorm/GroupNorm/BatchNorm scale ↔ weight;
    BatchNorm mean/var ('batch_stats') ↔ running_mean/running_var (num_batches_tracked is
    written as 0 and ignored on import);
  * positional conv weight norm: weight_g [K] ↔ `parametrizations.weight.original0` [1,1,K]
    (legacy `weight_g` also read), weight_v [K, D/G, D] ↔ `original1` [D, D/G, K];
  * the shared text embedding ↔ `encoder.prenet.embed_tokens` (text encoder) and/or
    `decoder.prenet.embed_tokens` and the tied `text_decoder_postnet.lm_head`.
  * HiFi-GAN ConvTranspose kernel [K, in, out] ↔ torch ConvTranspose1d weight [in, out, K].
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from unispeech_jax.models import speecht5 as speecht5_model
from unispeech_jax.models import vocoder as vocoder_model
from unispeech_jax.models.transformer import stack_layers, unstack_layers

log = logging.getLogger(__name__)

# Which of our pre/post-nets each HF class has: (encoder input, decoder output).
HF_CLASSES = {
    "SpeechT5ForSpeechToText": ("speech", "text"),
    "SpeechT5ForTextToSpeech": ("text", "speech"),
    "SpeechT5ForSpeechToSpeech": ("speech", "speech"),
}

# HF config fields that are ours under the same name.
_SAME_NAME = [f.name for f in speecht5_model.ModelArgs.__dataclass_fields__.values()]
_NOT_IN_HF = {
    "name",
    "feature_encoder",
    "feature_grad_mult",
    "num_codevector_groups",
    "num_codevectors_per_group",
    "gumbel_temperature",
    "vq_replace_prob",
    "num_clusters",
    "final_dim",
    "logit_temp",
    "diversity_loss_weight",
    "stop_pos_weight",
    "task",
    "label_smoothing",
    "ctc_loss_weight",
    "ctc_blank_id",
    "num_speakers",
    "dtype",
    "scan_layers",
    "remat",
}


def model_config_from_hf(hf_config) -> ml_collections.ConfigDict:
    """Our `config.model` for a `transformers.SpeechT5Config` (pre-training fields at defaults)."""
    cfg = speecht5_model.default_config()
    for name in _SAME_NAME:
        if name in _NOT_IN_HF:
            continue
        value = getattr(hf_config, name)
        cfg[name] = tuple(value) if isinstance(value, (list, tuple)) else value
    if hf_config.hidden_act != "gelu" or hf_config.feat_extract_activation != "gelu":
        raise ValueError("only GELU activations (HF's default) are supported")
    return cfg


def hf_config_kwargs(model_cfg) -> dict:
    """`transformers.SpeechT5Config` keyword arguments for our `config.model` (the fields HF
    has; `model_config_from_hf` of the result gives them back). ValueError for a front end
    HF lacks."""
    if model_cfg.feature_encoder != "conv":
        raise ValueError(
            f"model.feature_encoder={model_cfg.feature_encoder!r} has no Hugging Face "
            "counterpart: only the 'conv' front end converts"
        )
    values = {name: model_cfg[name] for name in _SAME_NAME if name not in _NOT_IN_HF}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _prefixes(encoder_input: str, decoder_output: str) -> dict:
    """Our top-level module → HF key prefix, for one HF class."""
    out = {
        "encoder": "speecht5.encoder.wrapped_encoder.",
        "decoder": "speecht5.decoder.wrapped_decoder.",
    }
    if encoder_input == "speech":
        out["speech_encoder_prenet"] = "speecht5.encoder.prenet."
    else:
        out["text_encoder_prenet"] = "speecht5.encoder.prenet.encode_positions."
    if decoder_output == "speech":
        out["speech_decoder_prenet"] = "speecht5.decoder.prenet."
        out["speech_decoder_postnet"] = "speech_decoder_postnet."
    return out


def _embedding_keys(encoder_input: str, decoder_output: str) -> list:
    keys = []
    if encoder_input == "text":
        keys.append("speecht5.encoder.prenet.embed_tokens.weight")
    if decoder_output == "text":
        keys += [
            "speecht5.decoder.prenet.embed_tokens.weight",
            "text_decoder_postnet.lm_head.weight",
        ]
    return keys


_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "embedding": "weight",
    "mean": "running_mean",
    "var": "running_var",
    "pe_k": "pe_k.weight",
    "alpha": "alpha",
    "masked_spec_embed": "masked_spec_embed",
    "weight_g": "conv.parametrizations.weight.original0",
    "weight_v": "conv.parametrizations.weight.original1",
}


def _hf_key(path: tuple, prefixes: Mapping[str, str]):
    """Our flat path → HF key, or None when the class has no such parameter."""
    if path[0] not in prefixes:
        return None
    middle = [re.sub(r"^(\w+?)_(\d+)$", r"\1.\2", p) for p in path[1:-1]]
    if path[-2:] == (
        "pos_conv_embed",
        "bias",
    ):  # weight_g / weight_v carry "conv." in _LEAF
        middle.append("conv")
    return prefixes[path[0]] + ".".join(middle + [_LEAF[path[-1]]])


def _to_torch_layout(leaf: str, value):
    if leaf == "kernel":
        return value.T if value.ndim == 2 else np.transpose(value, (2, 1, 0))
    if leaf == "weight_g":
        return value.reshape(1, 1, -1)
    if leaf == "weight_v":
        return np.transpose(value, (2, 1, 0))
    return value


def _from_torch_layout(leaf: str, value):
    if leaf == "kernel":
        return value.T if value.ndim == 2 else np.transpose(value, (2, 1, 0))
    if leaf == "weight_g":
        return value.reshape(-1)
    if leaf == "weight_v":
        return np.transpose(value, (2, 1, 0))
    return value


def _numpy(t):
    return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t, np.float32)


def _flat_variables(variables) -> dict:
    """{(collection, *path): array} of {'params', 'batch_stats'}, layer stacks unscanned
    (`layers_i`, the HF numbering)."""
    return traverse_util.flatten_dict(
        unstack_layers({k: variables[k] for k in ("params", "batch_stats") if k in variables})
    )


def infer_class(state_dict: Mapping) -> str:
    """HF class name from the keys of its state dict."""
    speech_in = any(k.startswith("speecht5.encoder.prenet.feature_encoder.") for k in state_dict)
    text_out = (
        "speecht5.decoder.prenet.embed_tokens.weight" in state_dict
        or "text_decoder_postnet.lm_head.weight" in state_dict
    )
    if text_out and not speech_in:
        raise ValueError("text-to-text SpeechT5 checkpoints have no HF class")
    return {
        (True, True): "SpeechT5ForSpeechToText",
        (False, False): "SpeechT5ForTextToSpeech",
        (True, False): "SpeechT5ForSpeechToSpeech",
    }[(speech_in, text_out)]


def _legacy_weight_norm(state_dict: Mapping) -> dict:
    """Rename torch's pre-2.1 weight-norm names (weight_g / weight_v) to parametrization names."""
    out = dict(state_dict)
    for key in list(out):
        for old, new in (
            ("conv.weight_g", "conv.parametrizations.weight.original0"),
            ("conv.weight_v", "conv.parametrizations.weight.original1"),
        ):
            if key.endswith(old):
                out[key[: -len(old)] + new] = out.pop(key)
    return out


def from_hf(
    model_or_state_dict,
    hf_config=None,
    hf_class: str | None = None,
    seed: int = 0,
    base=None,
    scan_layers: bool = True,
):
    """HF SpeechT5 model (or state dict + config) → (model_cfg ConfigDict, variables).

    scan_layers: the model config's `scan_layers`, and so the variables' layout (one stack
    with a leading layer axis per encoder/decoder, or `layers_i`).
    Vocabulary size comes from the HF config. Parts the HF class does not have are taken from
    `base` (variables of the same config, e.g. a pre-trained model that gets HF's ASR weights)
    or else initialised from `seed` (logged). Unused HF weights are logged as a warning.
    """
    if hasattr(model_or_state_dict, "state_dict") and not isinstance(model_or_state_dict, Mapping):
        hf_config = hf_config or model_or_state_dict.config
        hf_class = hf_class or type(model_or_state_dict).__name__
        state_dict = model_or_state_dict.state_dict()
    else:
        state_dict = model_or_state_dict
    if hf_config is None:
        raise ValueError("hf_config is required with a bare state dict")
    state_dict = _legacy_weight_norm(state_dict)
    hf_class = hf_class or infer_class(state_dict)
    encoder_input, decoder_output = HF_CLASSES[hf_class]
    prefixes = _prefixes(encoder_input, decoder_output)
    model_cfg = model_config_from_hf(hf_config)
    model_cfg.scan_layers = bool(scan_layers)
    module = speecht5_model.build(model_cfg, hf_config.vocab_size)
    init = lambda: speecht5_model.init_variables(module, jax.random.key(seed), unbox=True)
    layout = jax.eval_shape(init)  # real init only if something is missing
    shapes = _flat_variables(layout)
    fresh_values, fresh, used, out = None, [], set(), {}
    embed_keys = [k for k in _embedding_keys(encoder_input, decoder_output) if k in state_dict]
    for path, spec in shapes.items():
        rest = path[1:]  # path[0] is the collection
        key = (
            embed_keys[0]
            if rest == ("embed_tokens", "embedding") and embed_keys
            else _hf_key(rest, prefixes)
        )
        if key is None or key not in state_dict:
            if fresh_values is None:
                fresh_values = _flat_variables(init() if base is None else base)
            fresh.append("/".join(path))
            out[path] = np.asarray(fresh_values[path], np.float32)
            continue
        used.add(key)
        value = _from_torch_layout(rest[-1], _numpy(state_dict[key]))
        if value.shape != tuple(spec.shape):
            raise ValueError(
                f"{'/'.join(path)}: HF {key} shape {value.shape} != expected {spec.shape}"
            )
        out[path] = np.array(value, order="C")
    used.update(embed_keys)
    if fresh:
        log.info("from_hf: freshly initialised (not in %s): %s", hf_class, fresh)
    ignored = [k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")]
    if ignored:
        log.warning("from_hf: HF weights not used: %s", ignored)
    return model_cfg, stack_layers(traverse_util.unflatten_dict(out), layout)


def to_hf(variables, hf_class: str, masked_spec_embed: bool = True, as_torch: bool = True) -> dict:
    """Our variables → state dict of `hf_class` (torch tensors, or numpy with as_torch=False).

    masked_spec_embed: write it (HF creates it only when its config has mask_time_prob or
    mask_feature_prob > 0; we always have it).
    """
    encoder_input, decoder_output = HF_CLASSES[hf_class]
    prefixes = _prefixes(encoder_input, decoder_output)
    out = {}
    flat = _flat_variables(variables)
    if any(p[i : i + 2] == ("feature_encoder", "conv") for p in flat for i in range(len(p))):
        raise ValueError(
            "model.feature_encoder='log_mel' has no Hugging Face counterpart: "
            "only the 'conv' front end converts"
        )
    for path, value in flat.items():
        rest = path[1:]
        value = np.asarray(value, np.float32)
        if rest == ("embed_tokens", "embedding"):
            for key in _embedding_keys(encoder_input, decoder_output):
                out[key] = value
            continue
        key = _hf_key(rest, prefixes)
        if key is None or (rest[-1] == "masked_spec_embed" and not masked_spec_embed):
            continue
        out[key] = _to_torch_layout(rest[-1], value)
        if rest[-1] == "mean":
            out[key.replace("running_mean", "num_batches_tracked")] = np.zeros((), np.int64)
    out = {k: np.array(v, order="C") for k, v in out.items()}
    if as_torch:
        import torch

        out = {k: torch.from_numpy(v.copy()) for k, v in out.items()}
    return out


# --------------------------------------------------------------------------------------------
# HiFi-GAN vocoder
# --------------------------------------------------------------------------------------------


def _vocoder_key(path: tuple) -> str:
    parts = [re.sub(r"^(\w+?)_(\d+)$", r"\1.\2", p) for p in path]
    leaf = {"kernel": "weight", "bias": "bias", "mean": "mean", "scale": "scale"}[path[-1]]
    return ".".join(parts[:-1] + [leaf])


def _vocoder_layout(path: tuple, value, to_torch: bool):
    if path[-1] != "kernel":
        return value
    if path[0].startswith("upsampler_"):  # ConvTranspose1d: torch [in, out, K] ↔ ours [K, in, out]
        return np.transpose(value, (1, 2, 0)) if to_torch else np.transpose(value, (2, 0, 1))
    return np.transpose(value, (2, 1, 0))


def vocoder_config_from_hf(hf_config) -> ml_collections.ConfigDict:
    names = [f for f in vocoder_model.VocoderArgs.__dataclass_fields__]
    return ml_collections.ConfigDict({n: getattr(hf_config, n) for n in names})


def vocoder_from_hf(model_or_state_dict, hf_config=None):
    """HF SpeechT5HifiGan (or state dict + config) → (vocoder cfg, params). Weight-normed
    checkpoints must have the norm removed first (HF's `remove_weight_norm`)."""
    if hasattr(model_or_state_dict, "state_dict") and not isinstance(model_or_state_dict, Mapping):
        hf_config = hf_config or model_or_state_dict.config
        model_or_state_dict = model_or_state_dict.state_dict()
    cfg = vocoder_config_from_hf(hf_config)
    module = vocoder_model.build(cfg)
    shapes = traverse_util.flatten_dict(
        jax.eval_shape(lambda: vocoder_model.init_params(module, jax.random.key(0)))
    )
    out = {}
    for path, spec in shapes.items():
        value = _vocoder_layout(
            path, _numpy(model_or_state_dict[_vocoder_key(path)]), to_torch=False
        )
        if value.shape != tuple(spec.shape):
            raise ValueError(f"{'/'.join(path)}: shape {value.shape} != expected {spec.shape}")
        out[path] = np.array(value, order="C")
    return cfg, traverse_util.unflatten_dict(out)


def vocoder_to_hf(params, as_torch: bool = True) -> dict:
    """Our HiFi-GAN params → SpeechT5HifiGan state dict."""
    out = {
        _vocoder_key(path): np.array(
            _vocoder_layout(path, np.asarray(v, np.float32), to_torch=True), order="C"
        )
        for path, v in traverse_util.flatten_dict(params).items()
    }
    if as_torch:
        import torch

        out = {k: torch.from_numpy(v.copy()) for k, v in out.items()}
    return out


__all__ = [
    "HF_CLASSES",
    "from_hf",
    "hf_config_kwargs",
    "infer_class",
    "model_config_from_hf",
    "to_hf",
    "vocoder_config_from_hf",
    "vocoder_from_hf",
    "vocoder_to_hf",
]
