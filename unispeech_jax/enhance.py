r"""Cleans a noisy or reverberant speech file with a SpeechT5 SE workdir
(configs/speecht5_se_tiny.py), into a WAV file.

    python -m unispeech_jax.enhance --workdir runs/st5_se noisy.wav --out clean.wav \
        [--vocoder DIR]

The model generates the log-mel spectrogram of the clean speech (the pre-net's Tacotron
dropout on, drawn from `--seed`; the stop token ends it, `--threshold`), and Griffin-Lim turns
it into 16 kHz audio, or HiFi-GAN with `--vocoder DIR` (unispeech_jax/waveform.py). The input:
any format soundfile reads, resampled to 16 kHz. A missing or unreadable file, a missing
workdir or one of another task is one error line and exit status 2. The same code as
`unispeech_jax.convert_voice` (voice conversion), without a target voice.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

from absl import app

from unispeech_jax import convert_voice

if __name__ == "__main__":
    _FLAGS = convert_voice.define_flags("se")
    app.run(lambda files: convert_voice.main("se", _FLAGS, files), flags_parser=convert_voice.parse)
