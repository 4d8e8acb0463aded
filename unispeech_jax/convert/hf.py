"""Hugging Face transformers ⇄ unispeech_jax weights for UniSpeech and wav2vec 2.0.

Supported HF classes: UniSpeechModel / UniSpeechForPreTraining / UniSpeechForCTC and
Wav2Vec2Model / Wav2Vec2ForPreTraining / Wav2Vec2ForCTC (no adapters, GELU only).

    model_cfg, params = from_hf(hf_model_or_state_dict, hf_config)    # HF → ours
    state_dict = to_hf(params, model_cfg, family='unispeech')           # ours → HF
    model_cfg = model_config_from_hf(hf_config, objective='ctc')

Layout facts the converter relies on:
  * torch Linear weight is [out, in]; flax Dense kernel is [in, out] (transpose).
  * torch Conv1d weight is [out, in/groups, K]; flax conv kernel is [K, in/groups, out].
  * the positional conv is weight-normed over the kernel axis (torch `weight_norm(dim=2)`):
    g has torch shape [1, 1, K], v the conv weight shape. New torch parametrizations store
    them as `conv.parametrizations.weight.original0` (g) / `original1` (v); the legacy hook
    as `conv.weight_g` / `conv.weight_v`. Both are read; `to_hf` writes either style. A
    plain `conv.weight` (weight norm removed) is read as v with g = ‖v‖ per tap.
  * HF UniSpeechForPreTraining = our 'transpose' layout: HF `project_hid` (proj→hidden) is our
    `final_proj`. Wav2Vec2ForPreTraining = our 'standard' layout: HF `project_hid`
    (hidden→proj) is our `final_proj`. HF has no `q2h_proj` (standard mixed CTC) and
    Wav2Vec2ForPreTraining no `ctc_proj`: those stay freshly initialised on import.
  * quantizer codevectors: HF [1, G·V, d/G]; ours [G·V, d/G].
  * our scanned params (`scan_layers=True`) stack the layers on axis 0 under `encoder/layers`;
    unscanned ones are `encoder/layers_i`. Both directions handle either.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from unispeech_jax.models import transformer
from unispeech_jax.models import unispeech as unispeech_model

log = logging.getLogger(__name__)

_FAMILIES = {"unispeech": "unispeech", "wav2vec2": "wav2vec2"}


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def _family(hf_config) -> str:
    model_type = getattr(hf_config, "model_type", None)
    if model_type not in _FAMILIES:
        raise ValueError(
            f"unsupported HF model_type {model_type!r}; expected one of {sorted(_FAMILIES)}"
        )
    return model_type


def model_config_from_hf(hf_config, objective: str = "ctc"):
    """Our `config.model` (ConfigDict) for a HF UniSpeechConfig / Wav2Vec2Config.

    Keys HF does not know (feature_grad_mult, gumbel schedule, layer scan, ...) keep the base
    defaults of `unispeech.ModelArgs`. For wav2vec2 the objective is the wav2vec 2.0 one:
    'standard' projections, distractors from masked frames, ctc_weight 0.
    """
    family = _family(hf_config)
    for attr in ("hidden_act", "feat_extract_activation"):
        if getattr(hf_config, attr, "gelu") != "gelu":
            raise ValueError(
                f"only GELU is supported, HF config has {attr}={getattr(hf_config, attr)!r}"
            )
    if getattr(hf_config, "add_adapter", False) or getattr(hf_config, "adapter_attn_dim", None):
        raise ValueError("HF adapters are not supported")
    cfg = unispeech_model.default_config()
    g = lambda name, default=None: getattr(hf_config, name, default)  # noqa: E731
    cfg.update(
        dict(
            name="unispeech",
            objective=objective,
            conv_dim=tuple(int(x) for x in hf_config.conv_dim),
            conv_kernel=tuple(int(x) for x in hf_config.conv_kernel),
            conv_stride=tuple(int(x) for x in hf_config.conv_stride),
            conv_bias=bool(hf_config.conv_bias),
            feat_extract_norm=str(hf_config.feat_extract_norm),
            hidden_size=int(hf_config.hidden_size),
            num_layers=int(hf_config.num_hidden_layers),
            num_heads=int(hf_config.num_attention_heads),
            intermediate_size=int(hf_config.intermediate_size),
            layer_norm_first=bool(hf_config.do_stable_layer_norm),
            layer_norm_eps=float(hf_config.layer_norm_eps),
            num_conv_pos_embeddings=int(hf_config.num_conv_pos_embeddings),
            num_conv_pos_embedding_groups=int(hf_config.num_conv_pos_embedding_groups),
            hidden_dropout=float(g("hidden_dropout", 0.1)),
            attention_dropout=float(g("attention_dropout", 0.1)),
            activation_dropout=float(g("activation_dropout", 0.0)),
            feat_proj_dropout=float(g("feat_proj_dropout", 0.0)),
            feat_quantizer_dropout=float(g("feat_quantizer_dropout", 0.0)),
            final_dropout=float(g("final_dropout", 0.1)),
            layerdrop=float(g("layerdrop", 0.0)),
            mask_time_prob=float(g("mask_time_prob", 0.05)),
            mask_time_length=int(g("mask_time_length", 10)),
            mask_time_min_masks=int(g("mask_time_min_masks", 2)),
            mask_channel_prob=float(g("mask_feature_prob", 0.0)),
            mask_channel_length=int(g("mask_feature_length", 10)),
            mask_channel_min_masks=int(g("mask_feature_min_masks", 0)),
            num_codevector_groups=int(g("num_codevector_groups", 2)),
            num_codevectors_per_group=int(g("num_codevectors_per_group", 320)),
            codevector_dim=int(g("codevector_dim", 256)),
            proj_codevector_dim=int(g("proj_codevector_dim", 256)),
            num_negatives=int(g("num_negatives", 100)),
            contrastive_temperature=float(g("contrastive_logits_temperature", 0.1)),
            diversity_loss_weight=float(g("diversity_loss_weight", 0.1)),
        )
    )
    if family == "unispeech":
        cfg.update(
            dict(
                mixed_ctc_projection="transpose",
                replace_prob=float(g("replace_prob", 0.5)),
                negatives_from_everywhere=True,
            )
        )
    else:
        cfg.update(
            dict(mixed_ctc_projection="standard", ctc_weight=0.0, negatives_from_everywhere=False)
        )
    unispeech_model.ModelArgs.from_config(cfg)  # validate
    return cfg


# --------------------------------------------------------------------------------------------
# Name table: our unscanned flat param path → (HF key without family prefix, kind)
# --------------------------------------------------------------------------------------------
# kinds: 'linear' (transpose), 'conv' (K,in,out ↔ out,in,K), 'vec' (as is),
#        'codevectors' ([GV,d] ↔ [1,GV,d]), 'wn_g' / 'wn_v' (positional conv weight norm)

_LAYER_PARTS = {
    "attention/q_proj": "attention.q_proj",
    "attention/k_proj": "attention.k_proj",
    "attention/v_proj": "attention.v_proj",
    "attention/out_proj": "attention.out_proj",
    "feed_forward/intermediate_dense": "feed_forward.intermediate_dense",
    "feed_forward/output_dense": "feed_forward.output_dense",
}


def _hf_name(path: str):
    """(HF key relative to the base model or the head, is_head, kind) for one of our paths."""
    parts = path.split("/")
    leaf = parts[-1]
    mod = "/".join(parts[:-1])

    def dense(hf_mod):
        return (f"{hf_mod}.weight", "linear") if leaf == "kernel" else (f"{hf_mod}.bias", "vec")

    def norm(hf_mod):
        return f"{hf_mod}.{'weight' if leaf == 'scale' else 'bias'}", "vec"

    m = re.fullmatch(r"feature_extractor/conv_layers_(\d+)/(conv|layer_norm)", mod)
    if m:
        base = f"feature_extractor.conv_layers.{m.group(1)}.{m.group(2)}"
        if m.group(2) == "conv":
            return (
                (f"{base}.weight", False, "conv")
                if leaf == "kernel"
                else (f"{base}.bias", False, "vec")
            )
        return norm(base)[0], False, "vec"
    if mod == "feature_projection/layer_norm":
        return norm("feature_projection.layer_norm")[0], False, "vec"
    if mod == "feature_projection/projection":
        key, kind = dense("feature_projection.projection")
        return key, False, kind
    if path == "masked_spec_embed":
        return "masked_spec_embed", False, "vec"
    if mod == "encoder/pos_conv_embed":
        return {
            "weight_g": ("encoder.pos_conv_embed.conv.WN_G", False, "wn_g"),
            "weight_v": ("encoder.pos_conv_embed.conv.WN_V", False, "wn_v"),
            "bias": ("encoder.pos_conv_embed.conv.bias", False, "vec"),
        }[leaf]
    if mod == "encoder/layer_norm":
        return norm("encoder.layer_norm")[0], False, "vec"
    m = re.fullmatch(r"encoder/layers_(\d+)/(.+)", mod)
    if m:
        i, sub = m.group(1), m.group(2)
        if sub in ("layer_norm", "final_layer_norm"):
            return norm(f"encoder.layers.{i}.{sub}")[0], False, "vec"
        key, kind = dense(f"encoder.layers.{i}.{_LAYER_PARTS[sub]}")
        return key, False, kind
    if mod == "quantizer/weight_proj":
        key, kind = dense("quantizer.weight_proj")
        return key, True, kind
    if path == "quantizer/codevectors":
        return "quantizer.codevectors", True, "codevectors"
    heads = {
        "project_q": "project_q",
        "final_proj": "project_hid",
        "ctc_proj": "ctc_proj",
        "lm_head": "lm_head",
    }
    if mod in heads:
        key, kind = dense(heads[mod])
        return key, True, kind
    if mod == "q2h_proj":
        return None, True, "linear"
    raise KeyError(f"no HF name for param {path!r}")


# --------------------------------------------------------------------------------------------
# scan ⇄ unscanned
# --------------------------------------------------------------------------------------------


def unstack_layers(params) -> dict:
    """Flat {path: array} with `encoder/layers/...` [L, ...] split into `encoder/layers_i/...`."""
    return traverse_util.flatten_dict(transformer.unstack_layers(_unbox(params)), sep="/")


def stack_layers(flat: Mapping[str, Any], scan_layers: bool) -> dict:
    """Inverse of `unstack_layers` when scan_layers; returns a nested param dict."""
    nested = traverse_util.unflatten_dict(dict(flat), sep="/")
    return transformer.stack_layers(nested, {"encoder": {"layers": {}}}) if scan_layers else nested


def _unbox(params):
    import flax.linen as nn

    params = nn.meta.unbox(params)
    if isinstance(params, Mapping) and "params" in params and len(params) == 1:
        params = params["params"]
    return params


# --------------------------------------------------------------------------------------------
# HF → ours
# --------------------------------------------------------------------------------------------


def _to_numpy(t):
    if hasattr(t, "detach"):
        return t.detach().cpu().float().numpy()
    return np.asarray(t, np.float32)


_HEAD_MODULES = ("quantizer", "project_q", "project_hid", "ctc_proj", "lm_head", "dropout_features")


def _strip_prefix(state_dict: Mapping[str, Any], family: str):
    """Split a HF state dict into (base-model keys, head keys) without the family prefix."""
    prefix = family + "."
    has_prefix = any(k.startswith(prefix) for k in state_dict)
    base, head = {}, {}
    for k, v in state_dict.items():
        if has_prefix and k.startswith(prefix):
            base[k[len(prefix) :]] = v
        elif has_prefix:
            head[k] = v
        else:
            is_head = k.split(".")[0] in _HEAD_MODULES
            (head if is_head else base)[k] = v
    return base, head


def _weight_norm_parts(base: Mapping[str, Any]):
    """(g [K], v [out, in/groups, K]) of the positional conv from any torch naming."""
    stem = "encoder.pos_conv_embed.conv."
    for g_key, v_key in (
        (stem + "parametrizations.weight.original0", stem + "parametrizations.weight.original1"),
        (stem + "weight_g", stem + "weight_v"),
    ):
        if g_key in base:
            return _to_numpy(base[g_key]).reshape(-1), _to_numpy(base[v_key])
    v = _to_numpy(base[stem + "weight"])
    return np.sqrt(np.sum(v * v, axis=(0, 1))), v


def _infer_objective(head_keys) -> str:
    if any(k.startswith("lm_head.") for k in head_keys):
        return "ctc"
    if any(k.startswith("quantizer.") for k in head_keys):
        return "pretrain"
    return "ctc"


def vocab_size_from_params(params) -> int:
    """Output classes of the CTC head of a param tree (lm_head or ctc_proj)."""
    p = _unbox(params)
    head = p.get("lm_head", p.get("ctc_proj"))
    return int(head["kernel"].shape[-1])


def from_hf(
    model_or_state_dict,
    hf_config=None,
    objective: str | None = None,
    scan_layers: bool = True,
    vocab_size: int | None = None,
    seed: int = 0,
):
    """Import HF weights → (model_cfg ConfigDict, params nested dict of float32 numpy arrays).

    model_or_state_dict: a HF torch model (its `config` is used when hf_config is None) or a
      state dict (prefixed `unispeech.`/`wav2vec2.` for the head classes, or a bare model's).
    objective: 'ctc' / 'pretrain'; inferred from the head weights (lm_head → ctc, quantizer →
      pretrain, bare model → ctc with a fresh lm_head).
    vocab_size: size of a freshly initialised head when the checkpoint has none (default the
      HF config's vocab_size / num_ctc_classes).
    Params without a HF counterpart (q2h_proj, a missing head, masked_spec_embed when HF has
    none) are initialised from `seed`; they are logged.
    """
    if hasattr(model_or_state_dict, "state_dict") and not isinstance(model_or_state_dict, Mapping):
        hf_config = hf_config or model_or_state_dict.config
        state_dict = model_or_state_dict.state_dict()
    else:
        state_dict = model_or_state_dict
    if hf_config is None:
        raise ValueError("hf_config is required with a bare state dict")
    family = _family(hf_config)
    base, head = _strip_prefix(state_dict, family)
    objective = objective or _infer_objective(head)
    model_cfg = model_config_from_hf(hf_config, objective)
    model_cfg.scan_layers = bool(scan_layers)

    head_key = "lm_head.weight" if objective == "ctc" else "ctc_proj.weight"
    if head_key in head:
        vocab = int(head[head_key].shape[0])
    elif vocab_size is not None:
        vocab = int(vocab_size)
    elif objective == "pretrain" and family == "unispeech":
        vocab = int(getattr(hf_config, "num_ctc_classes", None) or hf_config.vocab_size)
    else:
        vocab = int(hf_config.vocab_size)

    module = unispeech_model.build(model_cfg, vocab)
    init = lambda: unispeech_model.init_params(module, jax.random.key(seed), unbox=True)  # noqa: E731
    flat = unstack_layers(
        jax.eval_shape(init)
    )  # shapes only; real init only if something is missing
    fresh_values = None
    g, v = _weight_norm_parts(base)
    fresh, used = [], set()
    out = {}
    for path, init_value in flat.items():
        key, is_head, kind = _hf_name(path)
        source = head if is_head else base
        if kind == "wn_g":
            value = g
        elif kind == "wn_v":
            value = np.transpose(v, (2, 1, 0))
        elif key is None or key not in source:
            if fresh_values is None:
                fresh_values = unstack_layers(init())
            fresh.append(path)
            out[path] = np.asarray(fresh_values[path], np.float32)
            continue
        else:
            used.add(key)
            t = _to_numpy(source[key])
            value = {
                "linear": lambda a: a.T,
                "conv": lambda a: np.transpose(a, (2, 1, 0)),
                "vec": lambda a: a,
                "codevectors": lambda a: a.reshape(a.shape[-2], a.shape[-1]),
            }[kind](t)
        if tuple(value.shape) != tuple(init_value.shape):
            raise ValueError(f"{path}: HF shape {value.shape} != expected {init_value.shape}")
        out[path] = np.ascontiguousarray(value, np.float32)
    if fresh:
        log.info("from_hf: freshly initialised (no HF counterpart): %s", fresh)
    ignored = [
        k
        for k in list(base) + list(head)
        if k not in used and "pos_conv_embed.conv" not in k and not k.startswith("dropout")
    ]
    if ignored:
        log.warning("from_hf: HF weights not used: %s", ignored)
    return model_cfg, stack_layers(out, scan_layers)


# --------------------------------------------------------------------------------------------
# ours → HF
# --------------------------------------------------------------------------------------------


def to_hf(
    params,
    model_cfg,
    family: str = "unispeech",
    base_model_only: bool = False,
    weight_norm: str = "parametrizations",
    as_torch: bool = True,
) -> dict:
    """Export params → HF state dict (torch tensors, or numpy with as_torch=False).

    family: 'unispeech' → UniSpeechFor{CTC,PreTraining} keys ('pretrain' needs the
      'transpose' layout), 'wav2vec2' → Wav2Vec2For{CTC,PreTraining} ('pretrain' needs
      'standard'; our ctc_proj has no HF place and is dropped).
    base_model_only: keys of the bare UniSpeechModel / Wav2Vec2Model (no prefix, no heads).
    weight_norm: 'parametrizations' (torch ≥ 2.1 names) or 'legacy' (weight_g / weight_v).
    masked_spec_embed is written only when the config masks (HF creates it only then).
    Works with scanned and unscanned params.
    """
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {sorted(_FAMILIES)}")
    args = unispeech_model.ModelArgs.from_config(model_cfg)
    if args.feature_encoder != "conv":
        raise ValueError(
            f"model.feature_encoder={args.feature_encoder!r} has no Hugging Face "
            "counterpart: only the 'conv' front end converts"
        )
    if args.objective == "pretrain" and not base_model_only:
        want = "transpose" if family == "unispeech" else "standard"
        if args.mixed_ctc_projection != want:
            raise ValueError(f"HF {family} pre-training layout needs mixed_ctc_projection={want!r}")
    flat = unstack_layers(params)
    prefix = "" if base_model_only else family + "."
    stem = "encoder.pos_conv_embed.conv."
    if weight_norm == "parametrizations":
        g_name, v_name = (
            stem + "parametrizations.weight.original0",
            stem + "parametrizations.weight.original1",
        )
    elif weight_norm == "legacy":
        g_name, v_name = stem + "weight_g", stem + "weight_v"
    else:
        raise ValueError("weight_norm must be 'parametrizations' or 'legacy'")
    with_mask_embed = args.mask_time_prob > 0 or args.mask_channel_prob > 0
    out = {}
    for path, value in flat.items():
        value = np.asarray(value, np.float32)
        key, is_head, kind = _hf_name(path)
        if is_head:
            if base_model_only or key is None:
                continue
            if family == "wav2vec2" and key.startswith("ctc_proj."):
                continue
        else:
            key = prefix + key
        if path == "masked_spec_embed" and not with_mask_embed:
            continue
        if kind == "wn_g":
            out[prefix + g_name] = value.reshape(1, 1, -1)
            continue
        if kind == "wn_v":
            out[prefix + v_name] = np.transpose(value, (2, 1, 0))
            continue
        out[key] = {
            "linear": lambda a: a.T,
            "conv": lambda a: np.transpose(a, (2, 1, 0)),
            "vec": lambda a: a,
            "codevectors": lambda a: a[None],
        }[kind](value)
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    if as_torch:
        import torch

        out = {k: torch.from_numpy(v.copy()) for k, v in out.items()}
    return out


__all__ = [
    "from_hf",
    "to_hf",
    "model_config_from_hf",
    "vocab_size_from_params",
    "stack_layers",
    "unstack_layers",
]
