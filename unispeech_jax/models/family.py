"""What every model family is: the `ModelFamily` protocol (the entry points train.py,
evaluate.py and the benches call, the same for all families) and `FamilyArgs`, the config
plumbing every family's `ModelArgs` shares.

A family is a module (`models.get(config.model.name)`); tests/test_family.py checks that each
one in `models.FAMILIES` has every entry point with these signatures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import jax.numpy as jnp
import ml_collections


def dataclass_from_mapping(cls, raw, what: str):
    """`cls(**raw)` for a mapping / ConfigDict; unknown keys are a ValueError naming `what`
    (typos must not pass); lists become tuples (nested too), so the result is hashable."""
    raw = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
    unknown = sorted(set(raw) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what}: {unknown}")
    as_tuple = lambda v: tuple(as_tuple(x) for x in v) if isinstance(v, (list, tuple)) else v
    return cls(**{k: as_tuple(v) for k, v in raw.items()})


def is_of_type(value, expected: type) -> bool:
    """Whether a config value is of a key's type. A config file can write anything
    (ConfigDict takes True for an int and None anywhere): a bool is not a number here and
    None is nothing; an int is a fine float."""
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, expected) and (expected is bool) == isinstance(value, bool)


def check_types(args) -> None:
    """ValueError naming the first field of a dataclass whose value is not of its default's
    type (`is_of_type`)."""
    for field in dataclasses.fields(args):
        value, expected = getattr(args, field.name), type(field.default)
        if not is_of_type(value, expected):
            raise ValueError(f"model.{field.name} must be a {expected.__name__}, got {value!r}")


class FamilyArgs:
    """Mixin of a family's frozen `ModelArgs` dataclass: the hashable, typed copy of
    `config.model`, with every key's default at the family's base size."""

    name: ClassVar[str]

    @classmethod
    def from_config(cls, model_cfg):
        """From a ConfigDict / mapping; unknown keys (typos must not pass) and values of
        another type than the field's are errors."""
        if isinstance(model_cfg, cls):
            return model_cfg
        args = dataclass_from_mapping(cls, model_cfg, f"config.model keys for {cls.name}")
        check_types(args)
        args.validate()
        return args

    def validate(self) -> None:
        """Raises ValueError naming the `model.` key of a value the family cannot build."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """`config.model` with every key at its default."""
        return ml_collections.ConfigDict(cls().to_dict())

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)


class ModelFamily(Protocol):
    """The entry points of a model family module. Shapes: B batch, S samples, T frames.

    ModelArgs: its `FamilyArgs` dataclass. LOGICAL_AXES: every logical axis name its params
    and activations carry (the default mesh rules in config.mesh_config map each one).
    Optional: predict_fn (families with a CTC head): (module, params, batch) -> (logits
    [B,T,V], frame_valid bool [B,T]); evaluation decodes and scores it (SpeechT5 decodes with
    `decoding.speecht5`). resolve_config(config): fixes model values the data decides before
    the model is built (SpeechT5's speaker table size). PRETRAINED_ALIASES (train.py).
    """

    ModelArgs: type[FamilyArgs]
    LOGICAL_AXES: tuple[str, ...]

    def default_config(self) -> ml_collections.ConfigDict:
        """`config.model` with every key at its base default."""

    def check_config(self, config: ml_collections.ConfigDict) -> None:
        """Config-time checks of `config.model` (ModelArgs.validate) and of how it combines
        with `config.data`: ValueError naming the key (config.validate makes it a
        ConfigError)."""

    def build(self, model_cfg, vocab_size: int) -> Any:
        """The flax module for `config.model` and `vocab_size` output ids."""

    def vocab_size(self, config: ml_collections.ConfigDict) -> int:
        """Output ids for `config.data` (phones; SpeechT5: text ids)."""

    def dummy_batch(self, data_cfg) -> dict:
        """A batch of the largest bucket shape (for init / eval_shape)."""

    def init_variables(self, module, rng, batch: Mapping[str, Any]) -> dict:
        """{'params': logically-partitioned params, other collections...}; under jit too."""

    def loss_fn(self, module, params, batch, rng, step, train: bool, model_state: dict):
        """-> (loss, (metrics: dict[str, scalar], model_state)); model_state holds the
        non-trainable collections of `init_variables` ({} when there are none)."""

    def flops_per_batch(self, model_cfg, batch_shapes: Mapping[str, tuple]) -> float:
        """Analytic FLOPs of one training step (forward + backward) on batches of these shapes."""
