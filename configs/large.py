r"""UniSpeech large (24 x 1024, FFN 4096, 16 heads, ~317 M parameters) pre-training.

Command (TPU pod or GPU hosts; the same command on every host; check the slice first with
`python -m unispeech_jax.aot --config configs/large.py --topology v5p:4x4x4`):
    python -m unispeech_jax.train --config configs/large.py --workdir runs/large

The official large recipe (microsoft/UniSpeech one2one_large_pretrain_en1350.sh): pre-LN blocks,
LayerNorm conv front end with biases, 768-d codevectors and projection, no layerdrop, lr 1e-3
with 25k warm-up decaying over 200k updates, crops of 20 s, 64 x 1.2 M samples per update.
Hardware: not run; its compiled step per TPU chip is in docs/results/aot.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.defaults()
    c.total_steps = 200_000

    d = c.data
    d.max_sample_len = 320_000
    d.bucket_boundaries = (80_000, 160_000, 240_000, 320_000)
    d.max_samples_per_batch = 64 * 1_200_000
    d.batch_multiple = 64

    m = c.model
    m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 1024, 24, 16, 4096
    m.layer_norm_first = True
    m.feat_extract_norm = "layer"
    m.conv_bias = True
    m.feature_grad_mult = 1.0
    m.layerdrop = 0.0
    m.feat_quantizer_dropout = 0.1
    m.codevector_dim = m.proj_codevector_dim = 768

    c.optim.lr = 1e-3
    c.optim.warmup_steps = 25_000
    return c
