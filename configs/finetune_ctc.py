r"""CTC fine-tuning of a pre-trained UniSpeech workdir: UniSpeech's second stage (small).

Command:
    python -m unispeech_jax.train --config configs/finetune_ctc.py --workdir runs/tiny_ctc \
        --config.init_from=runs/tiny
    python -m unispeech_jax.evaluate --workdir runs/tiny_ctc --split test

The encoder comes from `init_from`; `lm_head` starts from the pre-trained `ctc_proj` and is the
only part trained for the first `optim.freeze_steps`. Tri-stage lr, time + channel masking,
whole labelled utterances. Model sizes are configs/tiny.py's.
Hardware: 2 CPU cores, float32, ~0.3 s/step, 500 steps in ~4 minutes.
Result (2026-12-03): 1500 tiny.py steps + these 500: test PER 12.5-13.2 % (two seeds);
docs/results/unispeech_tiny.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.load_file(
        __file__.replace("finetune_ctc.py", "tiny.py")
    ).copy_and_resolve_references()
    c.unlock()
    c.total_steps = 500
    c.model.objective = "ctc"
    c.model.mask_time_prob = 0.25
    c.model.mask_channel_prob = 0.25
    c.model.mask_channel_length = 16
    c.model.feature_grad_mult = 0.0
    c.data.crop = False
    c.data.labelled_fraction = 1.0
    c.data.labelled_only = True  # with labelled_fraction < 1: the labelled subset only
    c.optim.schedule = "tri_stage"
    c.optim.lr = 3e-4
    c.optim.phase_ratio = (0.1, 0.4, 0.5)
    c.optim.freeze_steps = 100
    c.optim.freeze_regex = r"^(?!lm_head/)"
    c.lock()
    return c
