r"""configs/tiny.py trained with room reverberation and added noise: the CPU demo for real
recordings.

Command:
    python -m unispeech_jax.train --config configs/tiny_robust.py --workdir runs/tiny_robust
    python -m unispeech_jax.evaluate --workdir runs/tiny_robust --split test --data DIR
(DIR: a test corpus made with `python -m unispeech_jax.data.corpus --out DIR --hours 2
--noise-snr 10 --reverb`.) Half of the utterances go through a synthetic room, half get noise
(white, pink, brown or babble) at 5-20 dB SNR; `--config.data.augment_noise_dir=MUSAN` and
`--config.data.augment_rir_dir=RIRS` add recordings.
Hardware: 2 CPU cores, float32, the steps of configs/tiny.py (2500 of 16 audio-s).
Result (2026-12-04, loaded machine): test PER 17.5 % clean, 51.1 % with 10 dB noise and
reverberation (tiny.py at 2250: 13.4 / 72.6 %); docs/results/noise_robustness.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.load_file(__file__.replace("tiny_robust.py", "tiny.py"))
    c.data.augment_reverb_prob = 0.5
    c.data.augment_noise_prob = 0.5
    c.data.augment_noise_snr = (5.0, 20.0)
    return c
