r"""SpeechT5 base (encoder 12 x 768, decoder 6 x 768) joint pre-training: the paper-size config.

Command (GPU host or TPU pod; the same command on every host):
    python -m unispeech_jax.train --config configs/speecht5_base.py --workdir runs/st5_base

The paper's recipe: Adam, lr 2e-4, 64k warm-up, 500k updates, per update 32 x 2 x 90 s of
audio in speech steps and 32 x 2 x 12k tokens in text steps (raise optim.grad_accum on fewer
devices); 500 k-means MFCC clusters made on first use.
Hardware: not yet run at full scale; 2 CPU cores with a CPU-sized batch (2026-12-02): speech
step 5 s, text step 21 s; docs/results/base_on_cpu.md.
"""

from unispeech_jax import config as config_lib
from unispeech_jax.models import speecht5


def get_config():
    c = config_lib.defaults()
    c.total_steps = 500_000
    c.log_every = 100
    c.eval_every = 10_000
    c.eval_max_batches = 50

    d = c.data
    d.labels = ""  # pre-training reads km, mel and text, no phone transcripts
    d.max_label_len = 16
    d.max_samples_per_batch = 2 * 32 * 90 * 16_000
    d.batch_multiple = 64
    d.km_labels = "km"
    d.km_clusters = 500
    d.log_mel = True
    d.text_ratio = 0.5
    d.max_tokens_per_batch = 2 * 32 * 12_000

    c.model = speecht5.default_config()

    c.optim.lr = 2e-4
    c.optim.warmup_steps = 64_000
    return c
