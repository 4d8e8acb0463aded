"""The training loop end to end on the embedded corpus: learning, resume, evaluation, errors."""

import json
import os
import signal

import micro
import numpy as np
import pytest
from micro import micro_config
from micro import train_losses as losses

from unispeech_jax import config as config_lib
from unispeech_jax import evaluate, train


def test_train_resume_is_exact_and_eval_reports_per(tiny_corpus_env, tmp_path):
    straight = tmp_path / "straight"
    result = train.train(micro_config(), straight)
    assert result["step"] == 6
    assert np.isfinite(result["train"]["loss"])
    for key in (
        "ctc",
        "contrastive",
        "diversity",
        "code_perplexity",
        "lr",
        "grad_norm",
        "mfu",
        "audio_s_per_s",
    ):
        assert key in result["train"], key
    assert np.isfinite(result["eval"]["per"]) and result["eval"]["per"] >= 0.0

    # Stop after 4 steps (a checkpoint at 4), then resume to 6: the same losses, bit for bit.
    split = tmp_path / "split"
    train.train(micro_config(), split, stop_at=4)
    train.train(micro_config(), split)
    assert losses(split) == losses(straight)

    out = evaluate.evaluate_workdir(straight, "test", max_batches=2)
    assert "per" in out and out["step"] == 6
    assert json.loads((straight / "eval_test.json").read_text())["per"] == out["per"]


def test_loss_falls(tiny_corpus_env, tmp_path):
    """Forty updates of the micro model lower the training loss (it learns)."""
    c = micro_config(total_steps=40, log_every=10, eval_every=1000, checkpoint_every=1000)
    train.train(c, tmp_path / "w")
    curve = losses(tmp_path / "w")
    assert curve[40] < curve[10], curve


def test_config_errors_are_clear(tiny_corpus_env, tmp_path):
    with pytest.raises(config_lib.ConfigError, match="unknown config key"):
        config_lib.apply_overrides(micro_config(), ["model.hiden_size=3"])
    with pytest.raises(config_lib.ConfigError, match="model.num_layers"):
        config_lib.apply_overrides(micro_config(), ['model.num_layers="four"'])
    # bool is an int subclass and ConfigDict takes None anywhere: both are refused here.
    for override, message in [
        ("total_steps=True", "'total_steps' is of type int; got True"),
        ("optim.lr=False", "'optim.lr' is of type float; got False"),
        ("model.layer_norm_first=None", "'model.layer_norm_first' is of type bool; got None"),
    ]:
        with pytest.raises(config_lib.ConfigError, match=message):
            config_lib.apply_overrides(micro_config(), [override])
    fine = config_lib.apply_overrides(micro_config(), ["optim.lr=1", "data.strict=True"])
    assert fine.optim.lr == 1.0 and fine.data.strict is True
    in_file = micro_config()
    in_file.total_steps = True  # as a config file could write it
    with pytest.raises(config_lib.ConfigError, match="total_steps must be an integer, got True"):
        config_lib.validate(in_file, num_devices=1)
    with pytest.raises(config_lib.ConfigError, match="needs 3 devices"):
        train.train(micro_config(**{"mesh.shape.data": 3}), tmp_path / "a")
    with pytest.raises(config_lib.ConfigError, match="batch_multiple=3 must be a multiple"):
        config_lib.validate(micro_config(**{"data.batch_multiple": 3}), num_devices=2)
    wasteful = micro_config(**{"model.objective": "ctc", "data.labelled_fraction": 0.5})
    with pytest.raises(config_lib.ConfigError, match="set data.labelled_only=True"):
        config_lib.validate(wasteful, num_devices=2)
    listed = config_lib.apply_overrides(micro_config(), ["data.unlabelled_manifests=a.tsv,b.tsv"])
    assert listed.data.unlabelled_manifests == ("a.tsv", "b.tsv")
    with pytest.raises(config_lib.ConfigError, match="bucket_boundaries"):  # ints stay ints
        config_lib.apply_overrides(micro_config(), ["data.bucket_boundaries=a"])
    wasteful = micro_config(**{"model.objective": "ctc", "data.unlabelled_manifests": ("x.tsv",)})
    with pytest.raises(config_lib.ConfigError, match="they are for pre-training"):
        config_lib.validate(wasteful, num_devices=2)


@pytest.mark.parametrize(
    "config_file, override, message",
    [
        ("micro", "model.conv_dim=(1,2)", r"one entry per conv layer each, got lengths \{'conv_dim': 2, 'conv_kernel': 7"),
        ("micro", "model.dtype=float16x", r"model.dtype must be one of \('float32', 'bfloat16'\), got 'float16x'"),
        ("micro", "model.feature_encoder=mfcc", r"model.feature_encoder must be one of \('conv', 'log_mel'\), got 'mfcc'"),
        ("micro", "data.bucket_boundaries=(1,'a')", r"data.bucket_boundaries=\(1, 'a'\): expected a tuple of strictly"),
        ("speecht5_tiny", "model.dtype=half", r"model.dtype must be one of \('float32', 'bfloat16'\), got 'half'"),
        ("speecht5_tiny", "data.km_clusters=500", "data.km_clusters=500 k-means ids do not fit model.num_clusters=100"),
    ],
)  # fmt: skip
def test_model_and_data_mistakes_are_config_errors(config_file, override, message):
    """The model family's own checks (models/<family>.py: check_config) and the data block's
    run in config.validate, before anything is built: a ConfigError naming key and values."""
    if config_file == "micro":
        config = micro_config()
    else:
        config = config_lib.load_file(micro.REPO / "configs" / f"{config_file}.py")
    config_lib.apply_overrides(config, [override])
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config, num_devices=1)


@pytest.mark.parametrize(
    "config_file, key, value, message",
    [
        ("micro", "layer_norm_first", None, "model.layer_norm_first must be a bool, got None"),
        ("micro", "num_layers", True, "model.num_layers must be a int, got True"),
        ("speecht5_tiny", "scale_embedding", None, "model.scale_embedding must be a bool, got None"),
    ],
)  # fmt: skip
def test_config_file_values_of_the_wrong_type_are_config_errors(config_file, key, value, message):
    """A config file can write any value (ConfigDict takes True for an int and None for
    anything); the family's ModelArgs refuses what is not of its field's type."""
    if config_file == "micro":
        config = micro_config()
    else:
        config = config_lib.load_file(micro.REPO / "configs" / f"{config_file}.py")
    config.model[key] = value
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config, num_devices=1)


def test_merge_pretrained_loads_by_name_then_alias_and_never_across_shapes(caplog):
    """Same name and shape: loaded; a head with a pre-trained alias of the same shape: loaded
    from it (and logged as renamed); a shape mismatch under either name: left fresh."""
    import logging

    new = {
        "encoder": {"w": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.float32)},
        "lm_head": {"kernel": np.zeros((3, 5), np.float32), "bias": np.zeros(6, np.float32)},
    }
    old = {
        "encoder": {"w": np.ones((2, 3)), "b": np.ones(5)},
        "ctc_proj": {"kernel": np.full((3, 5), 2.0), "bias": np.ones(7)},
    }
    log = logging.getLogger("merge_test")
    with caplog.at_level(logging.INFO, logger="merge_test"):
        merged = train.merge_pretrained(new, old, log, (("lm_head/", "ctc_proj/"),))
    np.testing.assert_array_equal(merged["encoder"]["w"], np.ones((2, 3)))
    np.testing.assert_array_equal(merged["lm_head"]["kernel"], np.full((3, 5), 2.0))
    np.testing.assert_array_equal(merged["encoder"]["b"], np.zeros(4))
    np.testing.assert_array_equal(merged["lm_head"]["bias"], np.zeros(6))
    assert "'lm_head/kernel': 'ctc_proj/kernel'" in caplog.text
    assert "fresh: ['encoder/b', 'lm_head/bias']" in caplog.text
    without = train.merge_pretrained(new, old, log)
    np.testing.assert_array_equal(without["lm_head"]["kernel"], np.zeros((3, 5)))


def test_merge_pretrained_loads_layers_across_scanned_and_unscanned_layouts():
    import logging

    log = logging.getLogger("merge_test")
    scanned = {"encoder": {"layers": {"w": np.arange(6.0).reshape(2, 3)}, "ln": np.ones(3)}}
    unscanned = {
        "encoder": {
            "layers_0": {"w": np.zeros(3)},
            "layers_1": {"w": np.zeros(3)},
            "ln": np.zeros(3),
        }
    }
    merged = train.merge_pretrained(unscanned, scanned, log)
    np.testing.assert_array_equal(merged["encoder"]["layers_1"]["w"], [3.0, 4.0, 5.0])
    back = train.merge_pretrained({"encoder": {"layers": {"w": np.zeros((2, 3))}}}, merged, log)
    np.testing.assert_array_equal(back["encoder"]["layers"]["w"], scanned["encoder"]["layers"]["w"])


def test_finetune_from_pretrained_workdir_freezes_encoder(tiny_corpus_env, tmp_path):
    """objective='ctc' initialised from a chosen checkpoint of a pre-training run: encoder
    loaded, the CTC head from the pre-trained phonetic head and the only thing that moves
    during optim.freeze_steps."""
    from unispeech_jax import checkpoint

    pre = tmp_path / "pre"
    train.train(micro_config(total_steps=4, eval_every=100), pre)  # checkpoints at 2 and 4
    overrides = {
        "total_steps": 2,
        "eval_every": 100,
        "init_from": str(pre),
        "model.objective": "ctc",
        "optim.freeze_steps": 5,
        "optim.freeze_regex": r"^(?!lm_head/)",
    }
    with pytest.raises(checkpoint.CheckpointError, match=r"init_from_step=3: .* steps \[2, 4\]"):
        train.train(micro_config(init_from_step=3, **overrides), tmp_path / "bad")
    with pytest.raises(checkpoint.CheckpointError, match="init_from: no checkpoint in"):
        train.train(micro_config(**{**overrides, "init_from": str(tmp_path / "x")}), tmp_path / "y")
    result = train.train(micro_config(init_from_step=2, **overrides), tmp_path / "ft")
    assert np.isfinite(result["train"]["loss"])

    before = micro.restore_variables(pre, 2)[0]
    after = micro.restore_variables(tmp_path / "ft")[0]
    q = lambda p: p["encoder"]["layers"]["attention"]["q_proj"]["kernel"]
    np.testing.assert_array_equal(q(after), q(before))
    assert not np.array_equal(q(after), q(micro.restore_variables(pre, 4)[0]))
    assert "lm_head" in after and "ctc_proj" not in after
    # Two AdamW updates (lr <= 2e-3) away from the pre-trained head; a fresh one is ~0.2 off.
    moved = np.abs(after["lm_head"]["kernel"] - before["ctc_proj"]["kernel"]).max()
    assert 0 < moved < 0.01, moved


def test_train_step_is_built_once_per_bucket(tiny_corpus_env, tmp_path):
    """Every length bucket compiles the step once; steps after that reuse the executables
    (a state whose dtype or sharding drifted after step 1 would rebuild it and count here)."""
    # Boundaries that split the micro corpus's utterances (19k-32k samples after cropping).
    c = micro_config(
        total_steps=16,
        log_every=16,
        eval_every=1000,
        checkpoint_every=1000,
        **{"data.bucket_boundaries": (29000, 32000)},
    )
    result = train.train(c, tmp_path / "w")
    assert result["train"]["step_compiles"] == 2, result["train"]
    assert result["train"]["step_recompiles"] == 0


def test_stop_signal_flags_signals_inside_with_and_restores_the_handlers():
    """Inside `with` a SIGTERM becomes a flag; afterwards the previous handler is back, so a
    caller that goes on after train() (an experiment driver) is stopped by the next one."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with train.StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == "SIGTERM"
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_second_run_in_a_busy_workdir_fails_at_once_naming_the_first(tmp_path):
    """Two runs in one workdir would save into each other's checkpoints: the second stops
    before building anything; the lock goes with the first run (or its process)."""
    from unispeech_jax import checkpoint as checkpoint_lib

    with checkpoint_lib.workdir_lock(tmp_path):
        with pytest.raises(
            checkpoint_lib.CheckpointError, match=rf"in use .*\(pid {os.getpid()} on"
        ):
            train.train(micro_config(), tmp_path)
        assert not (tmp_path / "checkpoints").exists()
    with checkpoint_lib.workdir_lock(tmp_path):  # released
        pass
