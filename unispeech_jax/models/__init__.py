"""Model families. Each module exposes check_config, build, vocab_size, dummy_batch, loss_fn,
flops_per_batch, and init_params or, with non-trainable variables, init_variables
(docs/ARCHITECTURE.md, "Models"); `init_variables` and `loss_fn` below give train.py and
evaluate.py one calling convention for both kinds."""

import importlib

from unispeech_jax.errors import ConfigError

FAMILIES = ("unispeech", "speecht5")


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
    if hasattr(family, "init_variables"):
        return family.init_variables(module, rng, batch)
    return {"params": family.init_params(module, rng, batch)}


def loss_fn(family, module, params, model_state, batch, rng, step, train):
    """(loss, (metrics, model_state)) of any family. model_state: the non-trainable collections
    (`init_variables` minus 'params'; {} for families without), returned updated."""
    if hasattr(family, "init_variables"):
        return family.loss_fn(module, params, batch, rng, step, train, model_state)
    loss, metrics = family.loss_fn(module, params, batch, rng, step, train)
    return loss, (metrics, model_state)
