r"""CTC fine-tuning of a pre-trained UniSpeech workdir (fairseq wav2vec_ctc recipe, small).

Command (after a pre-training run in runs/tiny):
    python -m unispeech_jax.train --config configs/finetune_ctc.py --workdir runs/tiny_ctc \
        --config.init_from=runs/tiny
    python -m unispeech_jax.evaluate --workdir runs/tiny_ctc --split test

The encoder comes from `init_from` (every parameter whose name and shape match); the CTC
head `lm_head` starts fresh and is the only thing trained for the first `optim.freeze_steps`
updates. Tri-stage learning rate, time and channel masking (SpecAugment-style) as in the
official fine-tuning recipes; whole utterances (no cropping; longer ones are filtered).
Model sizes must match the pre-training config (these are configs/tiny.py's).
Hardware / result: not yet measured (see the UniSpeech issue's closing note).
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.load_file(
        __file__.replace('finetune_ctc.py', 'tiny.py')
    ).copy_and_resolve_references()
    c.unlock()
    c.total_steps = 1000
    c.model.objective = 'ctc'
    c.model.mask_time_prob = 0.25
    c.model.mask_channel_prob = 0.25
    c.model.mask_channel_length = 16
    c.model.feature_grad_mult = 0.0
    c.data.crop = False
    c.data.labelled_fraction = 1.0
    c.data.labelled_only = True  # with labelled_fraction < 1: the labelled subset only
    c.optim.schedule = 'tri_stage'
    c.optim.lr = 3e-4
    c.optim.phase_ratio = (0.1, 0.4, 0.5)
    c.optim.freeze_steps = 200
    c.optim.freeze_regex = r'^(?!lm_head/)'
    c.lock()
    return c
