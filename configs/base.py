r"""UniSpeech base (12 x 768, ~95 M parameters) pre-training: the paper-size config.

Command (GPU host or TPU pod; the same command on every host):
    python -m unispeech_jax.train --config configs/base.py --workdir runs/base

Every value is the official recipe's (unispeech_jax/config.py: `defaults`); the global batch
is 8 devices x 1.4 M samples (8 x 87.5 s of audio) per update.
Hardware: not yet run at full scale; on 2 CPU cores it compiles and runs steps with a
CPU-sized batch (docs/results/base_on_cpu.md).
"""

from unispeech_jax import config as config_lib


def get_config():
    return config_lib.defaults()
