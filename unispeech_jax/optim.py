"""Optimizer and learning-rate schedules of the official recipes.

`config.optim` keys:
  lr                  peak learning rate
  schedule            'polynomial' (warmup then polynomial decay to end_lr; fairseq's
                      polynomial_decay, used for pre-training), 'tri_stage' (warmup, hold,
                      exponential decay; used for CTC and SpeechT5 ASR fine-tuning) or
                      'inverse_sqrt' (linear warmup from 0, then lr·sqrt(warmup/step);
                      fairseq's inverse_sqrt, SpeechT5 TTS fine-tuning)
  warmup_steps        linear warmup length (polynomial, inverse_sqrt)
  end_lr, power       polynomial decay target and exponent
  phase_ratio         tri_stage (warmup, hold, decay) fractions of total_steps
  init_lr_scale, final_lr_scale   tri_stage start / end as fractions of lr
  b1, b2, eps, weight_decay       AdamW
  grad_clip           global-norm clipping (0 disables)
  grad_accum          micro-batches per update (the batch is split along its batch axis)
  freeze_steps        for the first N updates, parameters whose path matches freeze_regex
  freeze_regex        get no update (fine-tuning: the pre-trained encoder stays fixed while
                      the new head warms up)
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import ml_collections
import optax


def schedule(optim_cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Learning rate as a function of the update number."""
    lr = optim_cfg.lr
    if optim_cfg.schedule == "polynomial":
        warmup = optax.linear_schedule(0.0, lr, max(1, optim_cfg.warmup_steps))
        decay = optax.polynomial_schedule(
            lr, optim_cfg.end_lr, optim_cfg.power, max(1, total_steps - optim_cfg.warmup_steps)
        )
        return optax.join_schedules([warmup, decay], [optim_cfg.warmup_steps])
    if optim_cfg.schedule == "tri_stage":
        ratios = tuple(optim_cfg.phase_ratio)
        if abs(sum(ratios) - 1.0) > 1e-6:
            raise ValueError(f"optim.phase_ratio must sum to 1, got {ratios}")
        warm, hold = (int(r * total_steps) for r in ratios[:2])
        decay_steps = max(1, total_steps - warm - hold)
        final_scale = optim_cfg.final_lr_scale

        def tri_stage(step):
            step = jnp.asarray(step, jnp.float32)
            warm_lr = lr * (
                optim_cfg.init_lr_scale + (1 - optim_cfg.init_lr_scale) * step / max(1, warm)
            )
            decay_lr = lr * jnp.exp(jnp.log(final_scale) * (step - warm - hold) / decay_steps)
            return jnp.where(
                step < warm,
                warm_lr,
                jnp.where(step < warm + hold, lr, jnp.maximum(decay_lr, lr * final_scale)),
            )

        return tri_stage
    if optim_cfg.schedule == "inverse_sqrt":
        warmup = max(1, optim_cfg.warmup_steps)

        def inverse_sqrt(step):
            step = jnp.asarray(step, jnp.float32)
            return lr * jnp.minimum(step / warmup, jnp.sqrt(warmup / jnp.maximum(step, 1.0)))

        return inverse_sqrt
    raise ValueError(
        'optim.schedule must be "polynomial", "tri_stage" or "inverse_sqrt", got '
        f"{optim_cfg.schedule!r}"
    )


def frozen_mask(params, regex: str):
    """Pytree of bools: True where the '/'-joined parameter path matches `regex`."""
    pattern = re.compile(regex) if regex else None

    def match(path, _):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        return bool(pattern and pattern.search(name))

    return jax.tree_util.tree_map_with_path(match, params)


def make(optim_cfg: ml_collections.ConfigDict, total_steps: int):
    """Returns (optax transformation, schedule)."""
    lr = schedule(optim_cfg, total_steps)
    parts = []
    if optim_cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(optim_cfg.grad_clip))
    parts.append(
        optax.adamw(
            lr,
            b1=optim_cfg.b1,
            b2=optim_cfg.b2,
            eps=optim_cfg.eps,
            weight_decay=optim_cfg.weight_decay,
            mask=_decay_mask,
        )
    )
    return optax.chain(*parts), lr


def _decay_mask(params):
    """Weight decay on dense and conv kernels only, not on biases, norm scales, codebooks or
    embeddings. Decided by name, because scanned layers give biases a leading layer axis."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: str(getattr(path[-1], "key", path[-1])) == "kernel", params
    )
