"""Model families: modules with the entry points of `family.ModelFamily` (docs/ARCHITECTURE.md,
"Models"). `get` picks one by `config.model.name`; `loss_fn` orders a family's loss arguments
for `jax.value_and_grad` (params first)."""

import importlib

import flax.linen as nn
import jax

from unispeech_jax.errors import ConfigError

FAMILIES = ("unispeech", "speecht5")
# A loss metric: how many of the batch's rows the loss averages over, when that is not every
# real row (SpeechT5 sid: rows of training speakers). Evaluation weights batches by it, and a
# split where it is 0 has no defined loss (evaluate leaves the losses out).
COUNTED_ROWS = "counted_rows"


def get(name: str):
    """The model-family module for `config.model.name`."""
    if name not in FAMILIES:
        raise ConfigError(f"unknown model.name {name!r}; known: {FAMILIES}")
    return importlib.import_module(f"unispeech_jax.models.{name}")


def resolve_config(family, config) -> None:
    """Lets the family fix config values the data decides (`resolve_config(config)`, optional:
    SpeechT5's speaker table size) before a run builds its model."""
    if hasattr(family, "resolve_config"):
        family.resolve_config(config)


def init_variables(family, module, rng, batch) -> dict:
    """{'params': boxed params, other collections...} of any family (SpeechT5 adds its
    BatchNorm 'batch_stats'); works under jit / eval_shape."""
    return family.init_variables(module, rng, batch)


def abstract_variables(family, module, data_cfg) -> dict:
    """The shapes (jax.ShapeDtypeStruct) of `init_variables`, unboxed, computed without
    running it: the names and layout a checkpoint must be given in to apply `module`."""
    batch = jax.tree.map(lambda x: x[:1], family.dummy_batch(data_cfg))
    return nn.unbox(
        jax.eval_shape(lambda: init_variables(family, module, jax.random.key(0), batch))
    )


def loss_fn(family, module, params, model_state, batch, rng, step, train):
    """(loss, (metrics, model_state)) of any family. model_state: the non-trainable collections
    (`init_variables` minus 'params'; {} for families without), returned updated."""
    return family.loss_fn(module, params, batch, rng, step, train, model_state)
