r"""configs/tiny.py trained with room reverberation and added noise: the CPU demo for real
recordings.

Command:
    python -m unispeech_jax.train --config configs/tiny_robust.py --workdir runs/tiny_robust
    python -m unispeech_jax.evaluate --workdir runs/tiny_robust --split test --data DIR
(DIR: a test corpus made with `python -m unispeech_jax.data.corpus --out DIR --hours 2
--noise-snr 10 --reverb`.) Half of the utterances go through a synthetic room, half get noise
(white, pink, brown or babble) at 5-20 dB SNR; `--config.data.augment_noise_dir=MUSAN` and
`--config.data.augment_rir_dir=RIRS` add recordings.
Hardware: 2 CPU cores, float32; 6000 steps of 16 audio-s (tiny.py's 2500 end too early with
half the audio degraded): ~28 minutes on quiet cores, the README job's 30-minute budget.
Result (2026-12-04): test PER 10.9 % clean, 46.1 % with 10 dB noise and reverberation
(tiny.py: 13.4 / 72.6 %); the issue's 30 % is not reached; docs/results/noise_robustness.md.
"""

from unispeech_jax import config as config_lib


def get_config():
    c = config_lib.load_file(__file__.replace("tiny_robust.py", "tiny.py"))
    c.total_steps = 6000  # warm-up stays tiny.py's 250 steps
    c.data.augment_reverb_prob = 0.5
    c.data.augment_noise_prob = 0.5
    c.data.augment_noise_snr = (5.0, 20.0)
    return c
