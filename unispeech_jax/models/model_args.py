"""What the model families' `ModelArgs` dataclasses share: building one from `config.model`
(unknown keys and values of the wrong type refused, then the family's `validate`) and the
checks of the fields every family has (front end, compute dtype)."""

from __future__ import annotations

import dataclasses

from unispeech_jax.models import layers

COMPUTE_DTYPES = ("float32", "bfloat16")


def from_config(cls, model_cfg, family: str):
    """A `cls` (a family's frozen ModelArgs dataclass) from a ConfigDict / mapping; a `cls`
    is returned as is. ValueError for unknown keys (typos must not pass), for a value of
    another type than the field's default, and from `cls.validate`."""
    if isinstance(model_cfg, cls):
        return model_cfg
    raw = model_cfg.to_dict() if hasattr(model_cfg, "to_dict") else dict(model_cfg)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown config.model keys for {family}: {unknown}")
    args = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    check_types(args)
    args.validate()
    return args


def check_types(args) -> None:
    """ValueError naming the first field whose value is not of its default's type. A config
    file can write anything (ConfigDict takes True for an int and None anywhere): a bool is
    not a number here, None is nothing; an int is fine where a float is expected."""
    for field in dataclasses.fields(args):
        value, expected = getattr(args, field.name), type(field.default)
        if expected is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, expected) and (expected is bool) == isinstance(value, bool)
        if not ok:
            raise ValueError(f"model.{field.name} must be a {expected.__name__}, got {value!r}")


def check_shared_fields(args) -> None:
    """Config-time checks of the fields every family has: the front end (`feature_encoder`;
    conv_dim, conv_kernel and conv_stride, one entry per conv layer) and the compute `dtype`.
    ValueError naming the key and what it may be."""
    layers.check_feature_encoder(args.feature_encoder)
    lengths = {k: len(getattr(args, k)) for k in ("conv_dim", "conv_kernel", "conv_stride")}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            "model.conv_dim, conv_kernel and conv_stride need one entry per conv layer each, "
            f"got lengths {lengths}"
        )
    if args.dtype not in COMPUTE_DTYPES:
        raise ValueError(f"model.dtype must be one of {COMPUTE_DTYPES}, got {args.dtype!r}")
