r"""CTC fine-tuning of a pre-trained UniSpeech workdir: UniSpeech's second stage (the fairseq
wav2vec_ctc recipe, small).

Command (the measured runs: a 1500-step pre-training, then this file's 500 steps):
    python -m unispeech_jax.train --config configs/tiny.py --workdir runs/tiny \
        --config.total_steps=1500
    python -m unispeech_jax.train --config configs/finetune_ctc.py --workdir runs/tiny_ctc \
        --config.init_from=runs/tiny
    python -m unispeech_jax.evaluate --workdir runs/tiny_ctc --split test

The encoder comes from `init_from` (its newest checkpoint, or `--config.init_from_step=N`;
every parameter whose name and shape match); the CTC head `lm_head` starts from the
pre-trained phonetic CTC head `ctc_proj` when the phone vocabularies match
(`unispeech.PRETRAINED_ALIASES`) and is the only thing trained for the first
`optim.freeze_steps` updates. Tri-stage learning rate, time and channel masking
(SpecAugment-style) as in the official fine-tuning recipes; whole utterances (no cropping;
longer ones are filtered) and only the labelled ones (`data.labelled_only`: with
`--config.data.labelled_fraction=0.1` it trains on that 10 %). Model sizes must match the
pre-training config (these are configs/tiny.py's).

Hardware: 2 CPU cores (shared machine), float32, ~0.3 s/step (feature_grad_mult 0: no
gradient through the front end), 500 steps in ~4 minutes.
Measured 2026-12-03: PER on the test voices / the validation voices (both never heard in
training) after 2000 steps in all; `--config.seed=0` or `1` on both stages:
                                             seed 0          seed 1
  UniSpeech 1500 steps, then this file 500   12.5 / 6.3      13.2 / 7.3 %
    the same with a fresh lm_head            13.8 / 8.0      -
  bare CTC 1500 steps, then this file 500    13.4 / 4.9      12.5 / 4.6 %
    (tiny.py with model.objective=ctc and total_steps=2000, init_from_step=1500)
  bare CTC 2000 steps                        13.7 / 4.7      13.0 / 4.2 %
  UniSpeech pre-training alone at step 1500  15.1 / 9.0      15.4 / 9.6 %
Fine-tuning takes ~2.4 points off the pre-trained model; fine-tuning a bare CTC model the same
way ends 0.3-0.5 below running it on for those 500 steps; and the two fine-tuned models end
level on the test voices (12.9 vs 13.0 % mean, seeds ~0.7 apart), the bare CTC ahead on the
validation voices. UniSpeech does not beat a bare CTC on this all-labelled corpus. Starting lm_head from
ctc_proj is worth ~1.3 points. With 10 % of the corpus labelled, see configs/tiny.py.
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
