"""SpeechT5 joint pre-training through the one training loop: speech and text steps, resume."""

import json
import pathlib

import flax.linen as nn
import jax
import micro
import numpy as np
import optax

from unispeech_jax import config as config_lib
from unispeech_jax import step as step_lib
from unispeech_jax import train
from unispeech_jax.data import pipeline
from unispeech_jax.experiments import speecht5_ablation

REPO = pathlib.Path(__file__).resolve().parents[1]


# The micro SpeechT5 model (also of the fine-tuning config tests).
MICRO_MODEL = list(speecht5_ablation.MICRO_MODEL)


def micro_config(**overrides):
    """configs/speecht5_tiny.py shrunk to a model that compiles and steps in seconds on CPU:
    one speech bucket, one text bucket, k-means with 8 clusters on the tiny corpus."""
    c = config_lib.load_file(REPO / "configs" / "speecht5_tiny.py")
    config_lib.apply_overrides(
        c,
        [
            "total_steps=5",
            "log_every=1",
            "eval_every=5",
            "checkpoint_every=100",
            "eval_max_batches=1",
            "data.corpus.hours=0.02",
            "data.max_sample_len=32000",
            "data.bucket_boundaries=(32000,)",
            "data.max_samples_per_batch=64000",
            "data.batch_multiple=2",
            "data.km_clusters=8",
            "data.text_bucket_boundaries=(128,)",
            "data.max_tokens_per_batch=512",
            "peak_flops_per_device=1e10",
        ]
        + MICRO_MODEL
        + [f"{k}={v!r}" for k, v in overrides.items()],
    )
    return c


def train_rows(workdir):
    rows = [json.loads(row) for row in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == "train"]


# What a metrics row holds besides the step's own numbers: timings, this process's compile
# counts (a resumed process starts from 0).
NOT_THE_STEPS = ("wall_min", "audio_s_per_s", "s_per_step", "mfu", "step_compiles")


def test_joint_pretraining_resumes_bit_exact_with_mixed_source_and_batch_stats(
    tiny_corpus_env, tmp_path
):
    """Stop at step 3, resume to 5: every metric of every step equals the uninterrupted run's
    bit for bit (so the speech / text order, the data position, the RNG and the BatchNorm
    statistics all resumed); every loss part finite, both modalities trained."""
    straight = tmp_path / "straight"
    train.train(micro_config(), straight)
    work = tmp_path / "w"
    assert train.train(micro_config(), work, stop_at=3)["step"] == 3
    result = train.train(micro_config(), work)
    assert result["step"] == 5

    rows = train_rows(work)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # the second call went on from 3
    # A row also repeats the newest value of the other modality's metrics, which a resumed
    # process has not seen yet: compare what both rows have, which includes the step's own.
    for row, want in zip(rows, train_rows(straight), strict=True):
        shared = (set(row) & set(want)) - set(NOT_THE_STEPS)
        kind = "text" if row["loss"] == row.get("text/loss") else "speech"
        assert {"loss", "grad_norm", "param_norm", f"{kind}/loss"} <= shared, row
        assert {k: row[k] for k in shared} == {k: want[k] for k in shared}, row["step"]
    last = rows[-1]
    for key in (
        "speech/mlm",
        "speech/l1",
        "speech/bce",
        "speech/diversity",
        "speech/code_perplexity",
        "text/mle",
        "text/diversity",
        "text/code_perplexity",
    ):
        assert np.isfinite(last[key]), key
    assert 0 < last["speech/code_perplexity"] <= 16 and np.isfinite(result["eval"]["speech/mlm"])

    # Each row's `loss` is its own step's: text steps are those where it equals text/loss.
    kinds = ["text" if r["loss"] == r.get("text/loss") else "speech" for r in rows]
    config = micro_config()
    source = pipeline.make_train_iter(config.data, seed=config.seed)
    assert kinds == ["text" if "text" in next(source) else "speech" for _ in range(5)]
    assert set(kinds) == {"speech", "text"}

    params, model_state = micro.restore_variables(work)
    means = [
        np.abs(v).max()
        for path, v in jax.tree_util.tree_flatten_with_path(model_state["batch_stats"])[0]
        if path[-1].key == "mean"
    ]
    assert means and max(means) > 0  # training-mode BatchNorm moved its running means
    assert "label_embeddings" in params


def test_masked_prediction_is_learnable_on_one_speech_batch(tiny_corpus_env):
    """The HuBERT-style loss can fall: 60 steps on one fixed speech batch (log-mel front end,
    no dropout) take it well below its start and chance (ln 8)."""
    from unispeech_jax import models, optim

    config = micro_config(
        **{
            "optim.lr": 2e-3,
            "optim.warmup_steps": 10,
            "total_steps": 100,
            "model.feature_encoder": "log_mel",
            "model.hidden_dropout": 0.0,
            "model.attention_dropout": 0.0,
            "model.activation_dropout": 0.0,
        }
    )
    family = models.get(config.model.name)
    module = family.build(config.model, family.vocab_size(config))
    tx, lr_fn = optim.make(config.optim, config.total_steps)
    source = pipeline.make_train_iter(config.data, seed=0)
    batch = next(b for b in source if "km" in b)
    state = jax.jit(step_lib.make_init_fn(family, module, tx, batch))(jax.random.key(0))
    step = jax.jit(step_lib.make_train_step(family, module, tx, lr_fn, config, None))
    losses = []
    for _ in range(60):
        state, metrics = step(state, batch)
        losses.append(float(metrics["speech/mlm"]))
    assert np.mean(losses[-5:]) < 0.6 * losses[0] and np.mean(losses[-5:]) < 0.7 * np.log(8), losses


def test_pretraining_step_is_its_loss_parts(tiny_corpus_env):
    """The jitted train step on a speech and on a text batch: its loss is the family's
    loss_fn at that step's key, which is the documented sum of the parts tests/
    test_losses_speecht5.py checks against torch (L_mlm + L_1 + L_bce + γ·L_d, L_mle + γ·L_d),
    and the gradient it applies is that loss's."""
    from unispeech_jax import models, optim

    config = micro_config()
    family = models.get(config.model.name)
    module = family.build(config.model, family.vocab_size(config))
    tx, lr_fn = optim.make(config.optim, config.total_steps)
    source = pipeline.make_train_iter(config.data, seed=config.seed)
    speech = next(b for b in source if "km" in b)
    text = next(b for b in source if "text_source" in b)
    state = jax.jit(step_lib.make_init_fn(family, module, tx, speech))(jax.random.key(0))
    state = nn.meta.unbox(state)
    step = jax.jit(step_lib.make_train_step(family, module, tx, lr_fn, config, None))
    gamma = config.model.diversity_loss_weight

    @jax.jit
    def objective(params, batch):
        def loss(p):
            key = jax.random.fold_in(jax.random.key(config.seed), 0)  # the step's key at step 0
            return models.loss_fn(family, module, p, state["model_state"], batch, key, 0, True)

        return jax.value_and_grad(loss, has_aux=True)(params)

    for batch, parts in (
        (speech, {"speech/mlm": 1, "speech/l1": 1, "speech/bce": 1, "speech/diversity": gamma}),
        (text, {"text/mle": 1, "text/diversity": gamma}),
    ):
        _, metrics = step(state, batch)
        (loss, (parts_of, _)), grads = objective(state["params"], batch)
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
        np.testing.assert_allclose(loss, sum(w * parts_of[k] for k, w in parts.items()), rtol=1e-6)
        assert all(np.isfinite(parts_of[k]) and parts_of[k] > 0 for k in parts), parts_of
        np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-5)
