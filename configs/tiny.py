r"""Tiny UniSpeech pre-training on the embedded eSpeak NG corpus: the README's CPU demo.

Command:
    python -m unispeech_jax.train --config configs/tiny.py --workdir runs/tiny
    python -m unispeech_jax.evaluate --workdir runs/tiny --split test

4 x 256 pre-LN Transformer on the log-mel front end, mixed CTC + contrastive + diversity, all
of the 2 h corpus labelled (alpha 0.5).
Hardware: 2 CPU cores, float32, ~0.43 s per step of 16 audio-s.
Result (2026-12-02): test PER 14.2 % at 13.4 minutes, 12.5 % at the end (2500 steps, 18
minutes); curves and the comparison with a bare CTC: docs/results/unispeech_tiny.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.defaults()
    c.total_steps = 2500
    c.log_every = 25
    c.eval_every = 250
    c.checkpoint_every = 250

    c.data.corpus.hours = 2.0
    c.data.normalize = True
    c.data.max_sample_len = 96_000
    c.data.bucket_boundaries = (32_000, 48_000, 64_000, 96_000)
    c.data.max_samples_per_batch = 256_000
    c.data.batch_multiple = 4
    c.data.max_label_len = 256
    c.data.num_parallel_calls = 2

    m = c.model
    # Log-mel frames in place of the waveform conv stack: 2x the steps per minute, and the
    # per-utterance normalisation carries over to unheard voices (docs/results/unispeech_tiny.md).
    m.feature_encoder = "log_mel"
    # With the conv front end, narrow first three convs: they run at 3200-12800 frames/s of
    # audio (measured 2.40 s vs 1.15 s fwd+bwd per 64 audio-s). The log-mel front end reads
    # only the last entry (its conv's channels) and the kernels/strides (its frame geometry).
    m.conv_dim = (128,) * 3 + (256,) * 4
    m.feature_grad_mult = 1.0
    m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 256, 4, 4, 1024
    m.num_conv_pos_embeddings = 64
    m.layer_norm_first = True  # post-LN at this lr stayed on the CTC blank plateau
    m.layerdrop = 0.0
    m.mask_time_prob = 0.3
    m.codevector_dim, m.proj_codevector_dim = 128, 128
    m.gumbel_temperature = (2.0, 0.5, 0.999995)
    m.num_negatives = 50
    # At this batch (16 audio-s) the paper's 0.1 let the codebook collapse to 2-4 codes.
    m.diversity_loss_weight = 1.0
    m.replace_warmup_steps = 600  # let CTC leave its blank plateau first (unispeech.py)

    c.optim.lr = 2e-3
    c.optim.warmup_steps = 250
    return c
