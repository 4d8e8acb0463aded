"""Our side: the HF reference model converted with `convert/hf.py`, and our jitted steps.

A training step is `train.make_train_step` itself (loss, backward, clipping, AdamW, metrics),
so the benchmark times what `unispeech_jax.train` runs. Compilation is ahead of time
(`lower().compile()`), which fills the same cache the jitted call uses; its wall time is the
compile time, and the compiled executable gives XLA's FLOP count and buffer sizes.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from cases import Case
from unispeech_jax import config as config_lib
from unispeech_jax import optim, train
from unispeech_jax.convert import hf as hf_convert
from unispeech_jax.models import layers, unispeech

# JAX reports every XLA compilation under this event; counting them finds recompiles.
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """Counts XLA compilations from the moment it is created (jax.monitoring listener)."""

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event, duration, **kwargs):
        if event == _COMPILE_EVENT:
            self.count += 1


def build(case: Case, hf_model, overrides: dict):
    """(model_cfg, module, params) of `hf_model`'s weights; `overrides` are config.model keys
    (e.g. {'remat_policy': 'full'}), applied after the conversion."""
    scan = bool(overrides.get("scan_layers", True))
    model_cfg, params = hf_convert.from_hf(hf_model, objective=case.objective, scan_layers=scan)
    model_cfg.freeze_feature_encoder = case.frozen
    model_cfg.update(overrides)
    module = unispeech.build(model_cfg, hf_convert.vocab_size_from_params(params))
    return model_cfg, module, params


def analytic_flops(case: Case, model_cfg, batch: dict, vocab_size: int) -> float:
    """FLOPs of one step counted from the shapes (`unispeech.forward_flops`, 2 per MAC).

    Training = 3 × forward; with a frozen conv encoder its backward (2 × its forward) is not
    run; inference = 1 × forward.
    """
    shapes = {"audio": batch["audio"].shape, "vocab_size": vocab_size}
    forward = unispeech.forward_flops(model_cfg, shapes)
    if not case.train:
        return forward
    a = unispeech.ModelArgs.from_config(model_cfg)
    conv = layers.conv_encoder_flops(*batch["audio"].shape, a.conv_dim, a.conv_kernel, a.conv_stride)
    return 3.0 * forward - (2.0 * conv if case.frozen else 0.0)


def make_step(case: Case, model_cfg, module, params, batch: dict):
    """Compiles `case`'s step on `batch` → (step callable, facts dict: compile_s, xla_flops,
    xla_temp_mb). The callable blocks until the step's outputs are ready."""
    batch = jax.device_put({k: np.asarray(v) for k, v in batch.items()})
    if case.train:
        config = config_lib.defaults()
        config.model = model_cfg
        tx, lr_fn = optim.make(config.optim, config.total_steps)
        fn = jax.jit(train.make_train_step(unispeech, module, tx, lr_fn, config, frozen=None),
                     donate_argnums=(0,))
        state = {"step": np.zeros((), np.int32), "params": params, "opt_state": tx.init(params),
                 "nonfinite": np.zeros((), np.int32)}
        args = [jax.device_put(state), batch]
    else:
        fn = jax.jit(lambda p, b: unispeech.predict_fn(module, p, b))
        args = [jax.device_put(params), batch]

    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    facts = {"compile_s": compile_s, "xla_flops": float(cost.get("flops", float("nan"))),
             "xla_temp_mb": compiled.memory_analysis().temp_size_in_bytes / 2**20}

    def step():
        out = fn(*args)
        if case.train:
            args[0] = out[0]  # the donated state comes back as the next step's input
        jax.block_until_ready(out)

    return step, facts
