r"""UniSpeech base (12 × 768, ~95 M parameters) pre-training: the paper-size config.

Command (GPU host or TPU pod; the same command on every host):
    python -m unispeech_jax.train --config configs/base.py --workdir runs/base

Every value is the official recipe's (see unispeech_jax/config.py: `defaults`); the global
batch is 8 devices × 1.4 M samples (8 × 87.5 s of audio) per update.
Hardware: not yet run at full scale; on 2 CPU cores it compiles and runs steps (see the
closing note of the UniSpeech issue for s/step with a CPU-sized batch:
    --config.data.max_samples_per_batch=128000 --config.data.batch_multiple=2).
"""

from unispeech_jax import config as config_lib


def get_config():
    return config_lib.defaults()
