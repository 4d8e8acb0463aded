"""The optimizer: learning-rate schedules, the weight-decay mask, gradient accumulation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import micro
import ml_collections
import numpy as np
import pytest

from unispeech_jax import checkpoint, models, optim
from unispeech_jax import config as config_lib
from unispeech_jax import step as step_lib


def optim_config(**overrides):
    c = config_lib.defaults().optim
    c.update(overrides)
    return c


def lrs(cfg, total, steps):
    fn = optim.schedule(cfg, total)
    return np.array([float(fn(s)) for s in steps])


def test_polynomial_schedule_warms_up_then_decays_to_end_lr():
    """Linear warm-up to lr over warmup_steps, then (1 - progress)^power from lr to end_lr
    over the remaining steps (fairseq's polynomial_decay)."""
    cfg = optim_config(lr=1e-3, warmup_steps=100, end_lr=1e-5, power=1.0)
    np.testing.assert_allclose(
        lrs(cfg, 1100, [0, 50, 100, 600, 1100, 5000]),
        [0.0, 5e-4, 1e-3, (1e-3 + 1e-5) / 2, 1e-5, 1e-5],
        rtol=1e-6,
    )
    cfg.power = 2.0
    np.testing.assert_allclose(
        lrs(cfg, 1100, [350, 850]),
        [(1e-3 - 1e-5) * 0.75**2 + 1e-5, (1e-3 - 1e-5) * 0.25**2 + 1e-5],
        rtol=1e-6,
    )


def test_tri_stage_schedule_warms_holds_and_decays_exponentially():
    """fairseq's tri_stage: from init_lr_scale·lr linearly to lr, hold, then exponentially
    down to final_lr_scale·lr at the end, where it stays."""
    cfg = optim_config(
        lr=1e-3,
        schedule="tri_stage",
        phase_ratio=(0.1, 0.4, 0.5),
        init_lr_scale=0.01,
        final_lr_scale=0.05,
    )
    got = lrs(cfg, 1000, [0, 50, 100, 300, 499, 500, 750, 1000, 2000])
    warm = 1e-3 * (0.01 + 0.99 * 0.5)
    np.testing.assert_allclose(
        got,
        [1e-5, warm, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3 * 0.05**0.5, 5e-5, 5e-5],
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="phase_ratio must sum to 1"):
        optim.schedule(optim_config(schedule="tri_stage", phase_ratio=(0.1, 0.4, 0.4)), 1000)
    with pytest.raises(ValueError, match="inverse_sqrt"):
        optim.schedule(optim_config(schedule="cosine"), 1000)


def test_inverse_sqrt_schedule_warms_up_then_decays_as_one_over_sqrt_step():
    """fairseq's inverse_sqrt (SpeechT5 TTS fine-tuning): linear from 0 to lr over
    warmup_steps, then lr·sqrt(warmup/step)."""
    cfg = optim_config(lr=1e-3, schedule="inverse_sqrt", warmup_steps=100)
    np.testing.assert_allclose(
        lrs(cfg, 1000, [0, 50, 100, 400, 10_000]),
        [0.0, 5e-4, 1e-3, 5e-4, 1e-4],
        rtol=1e-6,
    )


def test_weight_decay_only_on_kernels():
    """With zero gradients an AdamW update is the decay alone: -lr·wd·kernel for dense and
    conv kernels (also scanned, with a layer axis), nothing for biases, norms, codebooks,
    embeddings."""
    cfg = optim_config(lr=1e-2, warmup_steps=0, weight_decay=0.1, grad_clip=0.0)
    tx, lr_fn = optim.make(cfg, total_steps=10)
    ones = lambda *shape: jnp.ones(shape, jnp.float32)  # noqa: E731
    params = {
        "proj": {"kernel": ones(3, 4), "bias": ones(4)},
        "layers": {"attention": {"kernel": ones(2, 3, 3)}, "layer_norm": {"scale": ones(2, 3)}},
        "quantizer": {"codevectors": ones(1, 8, 4)},
        "masked_spec_embed": ones(4),
        "pos_conv_embed": {"weight_v": ones(3, 2, 4), "weight_g": ones(1, 1, 4)},
    }
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    decay = -float(lr_fn(0)) * 0.1
    assert decay != 0
    flat = {
        "/".join(k.key for k in path): u for path, u in jax.tree_util.tree_leaves_with_path(updates)
    }
    for name, update in flat.items():
        expected = decay if name.endswith("/kernel") else 0.0
        np.testing.assert_allclose(update, expected, rtol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def ctc_setup(tiny_corpus):
    """A micro CTC model without randomness (no dropout, no masking) and a batch of four
    labelled utterances."""
    off = ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout")
    off += ("final_dropout", "layerdrop", "mask_time_prob", "mask_channel_prob")
    config = micro.micro_config(
        **{
            "model.objective": "ctc",
            "data.batch_multiple": 4,
            "optim.warmup_steps": 0,  # the first update at the full learning rate, not 0
            **{f"model.{k}": 0.0 for k in off},
        }
    )
    rng = np.random.default_rng(0)
    lengths = [8000, 7000, 6000, 8000]
    batch = {
        "audio": rng.standard_normal((4, 8000)).astype(np.float32),
        "audio_mask": np.arange(8000)[None, :] < np.array(lengths)[:, None],
        "phones": rng.integers(2, 20, (4, 6)).astype(np.int32),
        "phones_mask": np.arange(6)[None, :] < np.array([6, 5, 4, 3])[:, None],
        "labelled": np.ones(4, np.float32),
        "weight": np.ones(4, np.float32),
    }
    return config, batch


def one_step(config, batch):
    family = models.get(config.model.name)
    module = family.build(config.model, family.vocab_size(config))
    tx, lr_fn = optim.make(config.optim, config.total_steps)
    state = jax.jit(step_lib.make_init_fn(family, module, tx, batch))(jax.random.key(0))
    start = jax.device_get(state["params"])
    step = jax.jit(step_lib.make_train_step(family, module, tx, lr_fn, config, None))
    state, metrics = step(state, batch)
    return nn.meta.unbox((start, jax.device_get(state["params"]))) + (jax.device_get(metrics),)


def test_grad_accum_equals_one_batch_of_k_times_the_size(ctc_setup):
    """Two micro-batches of two utterances give the loss, gradient norm and update of one
    batch of four (the loss is a mean over equally many labelled utterances per micro-batch)."""
    config, batch = ctc_setup
    start, whole, m_whole = one_step(config, batch)
    config = ml_collections.ConfigDict(config.to_dict())
    config.optim.grad_accum = 2
    _, accumulated, m_accum = one_step(config, batch)
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(m_accum[key], m_whole[key], rtol=1e-5, err_msg=key)

    errors = micro.params_errors(accumulated, whole, start)
    assert max(errors.values()) < micro.PARAMS_RTOL, errors
    moved = jax.tree.map(lambda w, s: np.abs(w - s).max(), whole, start)
    still = [n for n, m in zip(checkpoint.array_names(moved), jax.tree.leaves(moved)) if m == 0]
    assert still == ["masked_spec_embed"]  # the only array without gradient: nothing is masked
