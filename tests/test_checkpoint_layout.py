"""A checkpoint restores into a model of the other layer layout (`model.scan_layers`): runs
saved before the key existed (per-layer params) load into today's scanned default, for
training (resume, into the sharded state) and for the readers (evaluate, inference).

Each case saves a freshly initialised micro model in one layout and loads it into the other:
the arrays are the same ones moved, and the model computes the same loss with them.
"""

import flax.linen as nn
import jax
import micro
import numpy as np
import pytest
import test_finetune_configs

from unispeech_jax import checkpoint, models, sharding, step

CONFIGS = {
    "unispeech": micro.micro_config,
    # TTS: encoder and decoder stacks, and a post-net whose per-layer BatchNorm statistics
    # (speech_decoder_postnet/layers_i, model_state) are no stack and must stay as they are.
    "speecht5": lambda **o: test_finetune_configs.task_micro_config("tts_tiny", **o),
}


def built(config):
    mesh = sharding.make_mesh(config.mesh)
    return step.build(config, mesh), mesh


def example(b, config) -> dict:
    """A batch of random inputs for the family's loss: speech (UniSpeech), text and mel
    frames (SpeechT5 TTS)."""
    rng = np.random.default_rng(0)
    if b.family.__name__.endswith("speecht5"):
        frames, tokens = 32, 16
        return {
            "text": rng.integers(4, b.module.vocab_size, (2, tokens)).astype(np.int32),
            "text_mask": np.ones((2, tokens), bool),
            "mel": rng.standard_normal((2, frames, b.module.args.num_mel_bins), np.float32),
            "mel_mask": np.ones((2, frames), bool),
            "weight": np.ones(2, np.float32),
        }
    batch = b.family.dummy_batch(config.data)
    return dict(batch, audio=rng.standard_normal(batch["audio"].shape, np.float32))


def loss(b, mesh, config, state) -> float:
    """The eval-mode loss of `state`'s variables on `example`."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(b.rules):
        value, _ = models.loss_fn(
            b.family,
            b.module,
            state["params"],
            dict(state.get("model_state") or {}),
            example(b, config),
            jax.random.key(1),
            0,
            False,
        )
    return float(value)


@pytest.mark.parametrize("family", CONFIGS)
@pytest.mark.parametrize("saved_scan", [False, True])
def test_checkpoint_loads_into_the_other_layer_layout(
    tiny_corpus_env, tmp_path, family, saved_scan
):
    saved_cfg = CONFIGS[family](**{"model.scan_layers": saved_scan})
    load_cfg = CONFIGS[family](**{"model.scan_layers": not saved_scan})
    saved_b, mesh = built(saved_cfg)
    saved = sharding.materialize(
        saved_b.init_fn, jax.random.key(0), saved_b.state_shardings, saved_b.rules
    )
    with checkpoint.Checkpoints(tmp_path, async_save=False) as ckpt:
        ckpt.save(1, saved, {"position": 3})
    load_b, _ = built(load_cfg)
    assert checkpoint.array_names(load_b.abstract_state) != checkpoint.array_names(saved)

    with checkpoint.Checkpoints(tmp_path, create=False) as ckpt:
        state, data_state = ckpt.restore(1, load_b.abstract_state)  # train's resume
        as_saved, _ = ckpt.restore(1)  # the readers'
    assert data_state == {"position": 3}
    assert jax.tree.structure(state) == jax.tree.structure(load_b.abstract_state)
    for x, want in zip(jax.tree.leaves(state), jax.tree.leaves(load_b.abstract_state)):
        assert (x.shape, x.dtype, x.sharding) == (want.shape, want.dtype, want.sharding)
    back = checkpoint.in_layout(state, saved)  # moved, not changed
    jax.tree.map(np.testing.assert_array_equal, back, saved)

    like = models.abstract_variables(load_b.family, load_b.module, load_cfg.data)
    params, model_state = checkpoint.variables(as_saved, like)
    jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(state["params"]))
    jax.tree.map(
        np.testing.assert_array_equal, model_state, jax.device_get(state.get("model_state", {}))
    )
    assert loss(load_b, mesh, load_cfg, state) == pytest.approx(
        loss(saved_b, mesh, saved_cfg, saved), rel=1e-5
    )


def test_a_checkpoint_of_another_model_is_still_refused(tiny_corpus_env, tmp_path):
    """Another size in the other layout: the layout is not what differs, the message says so."""
    saved_b, _ = built(micro.micro_config(**{"model.scan_layers": False}))
    saved = sharding.materialize(
        saved_b.init_fn, jax.random.key(0), saved_b.state_shardings, saved_b.rules
    )
    with checkpoint.Checkpoints(tmp_path, async_save=False) as ckpt:
        ckpt.save(1, saved, {})
    other, _ = built(micro.micro_config(**{"model.num_layers": 3}))
    with checkpoint.Checkpoints(tmp_path, create=False) as ckpt:
        with pytest.raises(checkpoint.CheckpointError, match="does not fit this model"):
            ckpt.restore(1, other.abstract_state)
