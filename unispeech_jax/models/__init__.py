"""Model families. Each module exposes build, init_params, dummy_batch, loss_fn, predict_fn
and flops_per_batch (docs/ARCHITECTURE.md, "Models")."""

import importlib

FAMILIES = ('unispeech',)


def get(name: str):
    """The model-family module for `config.model.name`."""
    if name not in FAMILIES:
        from unispeech_jax.config import ConfigError  # config imports the families' defaults

        raise ConfigError(f'unknown model.name {name!r}; known: {FAMILIES}')
    return importlib.import_module(f'unispeech_jax.models.{name}')
