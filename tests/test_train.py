"""The training loop end to end on the embedded corpus: learning, resume, evaluation, errors."""

import json

import numpy as np
import pytest

from unispeech_jax import config as config_lib
from unispeech_jax import evaluate
from unispeech_jax import train

from micro import micro_config
from micro import train_losses as losses


def test_train_resume_is_exact_and_eval_reports_per(tiny_corpus_env, tmp_path):
    straight = tmp_path / 'straight'
    result = train.train(micro_config(), straight)
    assert result['step'] == 6
    assert np.isfinite(result['train']['loss'])
    for key in (
        'ctc',
        'contrastive',
        'diversity',
        'code_perplexity',
        'lr',
        'grad_norm',
        'mfu',
        'audio_s_per_s',
    ):
        assert key in result['train'], key
    assert np.isfinite(result['eval']['per']) and result['eval']['per'] >= 0.0

    # Stop after 4 steps (a checkpoint at 4), then resume to 6: the same losses, bit for bit.
    split = tmp_path / 'split'
    train.train(micro_config(), split, stop_at=4)
    train.train(micro_config(), split)
    assert losses(split) == losses(straight)

    out = evaluate.evaluate_workdir(straight, 'test', max_batches=2)
    assert 'per' in out and out['step'] == 6
    assert json.loads((straight / 'eval_test.json').read_text())['per'] == out['per']


def test_loss_falls(tiny_corpus_env, tmp_path):
    """Forty updates of the micro model lower the training loss (it learns)."""
    c = micro_config(total_steps=40, log_every=10, eval_every=1000, checkpoint_every=1000)
    train.train(c, tmp_path / 'w')
    curve = losses(tmp_path / 'w')
    assert curve[40] < curve[10], curve


def test_config_errors_are_clear(tiny_corpus_env, tmp_path):
    with pytest.raises(config_lib.ConfigError, match='unknown config key'):
        config_lib.apply_overrides(micro_config(), ['model.hiden_size=3'])
    with pytest.raises(config_lib.ConfigError, match='model.num_layers'):
        config_lib.apply_overrides(micro_config(), ['model.num_layers="four"'])
    with pytest.raises(config_lib.ConfigError, match='needs 3 devices'):
        train.train(micro_config(**{'mesh.shape.data': 3}), tmp_path / 'a')
    with pytest.raises(config_lib.ConfigError, match='batch_multiple=3 must be a multiple'):
        config_lib.validate(micro_config(**{'data.batch_multiple': 3}), num_devices=2)


def test_finetune_from_pretrained_workdir_freezes_encoder(tiny_corpus_env, tmp_path):
    """objective='ctc' initialised from a pre-training run: encoder loaded, head fresh and the
    only thing that moves during optim.freeze_steps."""
    pre = tmp_path / 'pre'
    train.train(micro_config(total_steps=2, eval_every=100), pre)
    ft = micro_config(
        total_steps=2,
        eval_every=100,
        init_from=str(pre),
        **{
            'model.objective': 'ctc',
            'optim.freeze_steps': 5,
            'optim.freeze_regex': r'^(?!lm_head/)',
        },
    )
    result = train.train(ft, tmp_path / 'ft')
    assert np.isfinite(result['train']['loss'])
    from unispeech_jax import checkpoint

    before = checkpoint.Checkpoints(pre).restore_params()
    after = checkpoint.Checkpoints(tmp_path / 'ft').restore_params()
    np.testing.assert_array_equal(
        after['encoder']['layers']['attention']['q_proj']['kernel'],
        before['encoder']['layers']['attention']['q_proj']['kernel'],
    )
    assert 'lm_head' in after and 'ctc_proj' not in after


def test_train_step_is_built_once_per_bucket(tiny_corpus_env, tmp_path):
    """Every length bucket compiles the step once; steps after that reuse the executables
    (a state whose dtype or sharding drifted after step 1 would rebuild it and count here)."""
    # Boundaries that split the micro corpus's utterances (19k-32k samples after cropping).
    c = micro_config(total_steps=16, log_every=16, eval_every=1000, checkpoint_every=1000,
                     **{'data.bucket_boundaries': (29000, 32000)})
    result = train.train(c, tmp_path / 'w')
    assert result['train']['step_compiles'] == 2, result['train']
    assert result['train']['step_recompiles'] == 0
