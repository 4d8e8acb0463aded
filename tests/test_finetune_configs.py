"""configs/speecht5_{asr,tts}_{tiny,base}.py: each fine-tuning config trains a few steps through
the training loop (the micro SpeechT5 model on the tiny corpus), from scratch and from a
pre-training workdir."""

import json
import pathlib

import jax
import micro
import numpy as np
import pytest
import test_train_speecht5

from unispeech_jax import config as config_lib
from unispeech_jax import train

REPO = pathlib.Path(__file__).resolve().parents[1]


def task_micro_config(name: str, **overrides):
    """configs/speecht5_<name>.py with the micro model, one bucket, 3 steps."""
    c = config_lib.load_file(REPO / "configs" / f"speecht5_{name}.py")
    config_lib.apply_overrides(
        c,
        [
            "total_steps=3",
            "log_every=1",
            "eval_every=3",
            "checkpoint_every=100",
            "eval_max_batches=1",
            "data.corpus.hours=0.02",
            "data.max_sample_len=64000",
            "data.bucket_boundaries=(64000,)",
            "data.text_bucket_boundaries=(128,)",
            "data.max_samples_per_batch=128000",
            "data.batch_multiple=2",
            "peak_flops_per_device=1e10",
        ]
        + test_train_speecht5.MICRO_MODEL
        + [f"{k}={v!r}" for k, v in overrides.items()],
    )
    return c


def _rows(workdir, split):
    rows = [json.loads(r) for r in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


@pytest.mark.parametrize(
    "name,metric",
    [
        ("asr_tiny", "asr/ce"),
        ("tts_tiny", "tts/l1"),
        ("asr_base", "asr/ce"),
        ("tts_base", "tts/l1"),
    ],
)
def test_finetuning_config_trains_and_evaluates(tiny_corpus, tmp_path, name, metric):
    workdir = tmp_path / name
    train.train(task_micro_config(name), workdir)
    rows = _rows(workdir, "train")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r[metric] > 0 for r in rows)
    (evaluated,) = _rows(workdir, "valid")
    assert np.isfinite(evaluated["loss"]) and evaluated[metric] > 0


def test_finetuning_starts_from_a_pretraining_workdir_with_the_encoder_frozen(
    tiny_corpus, tmp_path
):
    """init_from loads the pre-trained parameters; during optim.freeze_steps the encoder
    (freeze_regex ^encoder/) keeps them while the decoder moves."""
    pretrained = tmp_path / "pretrain"
    train.train(test_train_speecht5.micro_config(total_steps=1, eval_every=1), pretrained)
    workdir = tmp_path / "asr"
    config = task_micro_config("asr_tiny", init_from=str(pretrained), **{"optim.freeze_steps": 3})
    train.train(config, workdir)
    before, _ = micro.restore_variables(pretrained)
    after, _ = micro.restore_variables(workdir)
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), after, before)
    assert all(jax.tree.leaves(same["encoder"]))
    assert not all(jax.tree.leaves(same["decoder"]))
