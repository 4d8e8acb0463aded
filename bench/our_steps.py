"""Our side: the HF reference model converted with `convert/hf.py` (UniSpeech, wav2vec 2.0) or
`convert/hf_speecht5.py` (SpeechT5), and our jitted steps.

A training step is `step.make_train_step` itself (loss, backward, clipping, AdamW, metrics),
so the benchmark times what `unispeech_jax.train` runs; SpeechT5 greedy generation is
`decoding.speecht5.search` (beam 1, the end token suppressed for GREEDY_STEPS steps as HF's
`min_new_tokens`). Compilation is ahead of time (`lower().compile()`), which fills the same cache the jitted call uses; its wall time is the
compile time, and the compiled executable gives XLA's FLOP count and buffer sizes.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from cases import GREEDY_STEPS, Case

from unispeech_jax import config as config_lib
from unispeech_jax import decoding, optim
from unispeech_jax import step as step_lib
from unispeech_jax.convert import hf as hf_convert
from unispeech_jax.convert import hf_speecht5
from unispeech_jax.models import layers, speecht5, unispeech


def _family(case: Case):
    return speecht5 if case.family == "speecht5" else unispeech


def build(case: Case, hf_model, overrides: dict):
    """(model_cfg, module, variables) of `hf_model`'s weights; `overrides` are config.model keys
    (e.g. {'remat': 'per_layer'}), applied after the conversion. variables: UniSpeech params,
    or SpeechT5's {'params', 'batch_stats'}."""
    scan = bool(overrides.get("scan_layers", True))
    if case.family == "speecht5":
        model_cfg, variables = hf_speecht5.from_hf(hf_model, scan_layers=scan)
        model_cfg.task = case.objective
        model_cfg.update(overrides)
        return model_cfg, speecht5.build(model_cfg, hf_model.config.vocab_size), variables
    model_cfg, params = hf_convert.from_hf(hf_model, objective=case.objective, scan_layers=scan)
    model_cfg.freeze_feature_encoder = case.frozen
    model_cfg.update(overrides)
    module = unispeech.build(model_cfg, hf_convert.vocab_size_from_params(params))
    return model_cfg, module, params


def analytic_flops(case: Case, model_cfg, batch: dict, vocab_size: int) -> float:
    """FLOPs of one step counted from the shapes (`unispeech.forward_flops`, 2 per MAC).

    Training = 3 × forward; with a frozen conv encoder its backward (2 × its forward) is not
    run; inference = 1 × forward. SpeechT5 (`speecht5.forward_flops`, no output projection):
    greedy generation does the matmuls of one teacher-forced forward of GREEDY_STEPS tokens
    (cached cross-attention keys/values, a self-attention cache of GREEDY_STEPS slots).
    """
    if case.family == "speecht5":
        shapes = {k: v.shape for k, v in batch.items()}
        if not case.train:
            return speecht5.forward_flops(
                model_cfg, dict(shapes, text=(shapes["audio"][0], GREEDY_STEPS))
            )
        return speecht5.flops_per_batch(model_cfg, shapes)
    shapes = {"audio": batch["audio"].shape, "vocab_size": vocab_size}
    forward = unispeech.forward_flops(model_cfg, shapes)
    if not case.train:
        return forward
    a = unispeech.ModelArgs.from_config(model_cfg)
    conv = layers.conv_encoder_flops(
        *batch["audio"].shape, a.conv_dim, a.conv_kernel, a.conv_stride
    )
    return 3.0 * forward - (2.0 * conv if case.frozen else 0.0)


def _initial_state(case: Case, tx, variables) -> dict:
    """The training state `step.make_init_fn` would make, around converted weights."""
    params = variables["params"] if case.family == "speecht5" else variables
    state = {
        "step": np.zeros((), np.int32),
        "params": params,
        "opt_state": tx.init(params),
        "nonfinite": np.zeros((), np.int32),
    }
    if case.family == "speecht5":
        state["model_state"] = {"batch_stats": variables["batch_stats"]}
    return state


def _inference_fn(case: Case, module):
    """jittable (variables, batch) → outputs of `case`'s inference."""
    if case.family == "speecht5":
        return lambda v, b: decoding.speecht5.search(
            module,
            v,
            b["audio"],
            b["audio_mask"],
            max_length=GREEDY_STEPS,
            min_length=GREEDY_STEPS,
        )["tokens"]
    return lambda p, b: unispeech.predict_fn(module, p, b)


def make_step(case: Case, model_cfg, module, params, batch: dict):
    """Compiles `case`'s step on `batch` → (step callable, facts dict: compile_s, xla_flops,
    compile_cpu_s (this process's CPU seconds while compiling), xla_temp_mb). The callable blocks until the step's outputs are ready. params: as `build`
    returns them."""
    batch = jax.device_put({k: np.asarray(v) for k, v in batch.items()})
    if case.train:
        config = config_lib.defaults()
        config.model = model_cfg
        tx, lr_fn = optim.make(config.optim, config.total_steps)
        fn = jax.jit(
            step_lib.make_train_step(_family(case), module, tx, lr_fn, config, frozen=None),
            donate_argnums=(0,),
        )
        args = [jax.device_put(_initial_state(case, tx, params)), batch]
    else:
        fn = jax.jit(_inference_fn(case, module))
        args = [jax.device_put(params), batch]

    start, cpu_start = time.perf_counter(), time.process_time()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    compile_cpu_s = time.process_time() - cpu_start  # less sensitive to a loaded machine
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    facts = {
        "compile_s": compile_s,
        "compile_cpu_s": compile_cpu_s,
        "xla_flops": float(cost.get("flops", float("nan"))),
        "xla_temp_mb": compiled.memory_analysis().temp_size_in_bytes / 2**20,
    }

    def step():
        out = fn(*args)
        if case.train:
            args[0] = out[0]  # the donated state comes back as the next step's input
        jax.block_until_ready(out)

    return step, facts
