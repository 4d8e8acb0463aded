r"""SpeechT5 base (encoder 12 × 768, decoder 6 × 768) joint pre-training: the paper-size config.

Command (GPU host or TPU pod; the same command on every host):
    python -m unispeech_jax.train --config configs/speecht5_base.py --workdir runs/st5_base

The model is speecht5.ModelArgs' defaults (the paper's base). The recipe as the paper states
it: Adam, lr 2e-4, 64k warm-up, 500k updates, ~90 s of speech and ~12k text tokens per GPU on
32 GPUs with update frequency 2, i.e. per update 32·2·90 s of audio in speech steps and
32·2·12k tokens in text steps (raise optim.grad_accum on fewer devices). Speech targets: 500
k-means clusters of MFCCs made on first use (the first iteration; a second iteration clusters
a trained model's features, `python -m unispeech_jax.tools.kmeans_labels --feature-fn`).
Hardware / result: not yet run at full scale. CPU check (2 cores, other processes paused,
2026-12-02, 154.2 M parameters), with a CPU-sized batch:
    --stop_at=6 --config.data.corpus.hours=2.0 --config.data.max_sample_len=64000
    --config.data.bucket_boundaries='(64000,)' --config.data.max_samples_per_batch=128000
    --config.data.batch_multiple=2 --config.data.text_bucket_boundaries='(128,)'
    --config.data.max_tokens_per_batch=2048 --config.data.km_clusters=100
    --config.model.num_clusters=100
  speech step (2 x 4 s: masked prediction + mel L1/BCE): 5.1 / 4.8 s, MFU 43-46 %;
  text step (16 x 128 tokens: infilling + decoder MLE): 21.1 / 20.3 s, MFU 42-44 %;
  the first step of each kind includes its compilation (61 s and 69 s); step_compiles 2.
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
