r"""Tiny UniSpeech pre-training on the embedded eSpeak NG corpus: the README's CPU demo.

Command:
    python -m unispeech_jax.train --config configs/tiny.py --workdir runs/tiny
    python -m unispeech_jax.evaluate --workdir runs/tiny --split test

Hardware: 2 CPU cores (shared machine), float32.
Result: (to be filled in from the measured run)
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.defaults()
    c.total_steps = 3000
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
    m.conv_dim = (256,) * 7
    m.feature_grad_mult = 1.0
    m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 256, 4, 4, 1024
    m.num_conv_pos_embeddings = 64
    m.layerdrop = 0.0
    m.mask_time_prob = 0.3
    m.num_codevectors_per_group, m.codevector_dim, m.proj_codevector_dim = 64, 128, 128
    m.gumbel_temperature = (2.0, 0.5, 0.999)
    m.num_negatives = 50

    c.optim.lr = 1e-3
    c.optim.warmup_steps = 300
    return c
