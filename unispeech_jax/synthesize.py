r"""Speaks a sentence with a SpeechT5 TTS workdir (configs/speecht5_tts_tiny.py) into a WAV file.

    python -m unispeech_jax.synthesize --workdir runs/st5_tts --text "hello there" --out a.wav \
        [--speaker NAME | --xvector F.npy] [--vocoder DIR]

The model generates the log-mel spectrogram (the pre-net's Tacotron dropout on, drawn from
`--seed`; the stop token ends it, `--threshold`), and Griffin-Lim turns it into 16 kHz audio,
or HiFi-GAN with `--vocoder DIR` (a Hugging Face SpeechT5HifiGan save; unispeech_jax/waveform.py).
The voice: a training speaker's `.spk` name with `--speaker` (default: the mean of the speaker
table), or an x-vector file (np.save of float [E]) for a model trained on x-vectors. An empty
text, a missing workdir or one of another task is one error line and exit status 2.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

import logging
import pathlib
import sys

import numpy as np
from absl import app, flags
from absl import logging as absl_logging

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import inference, platforms, waveform
from unispeech_jax.data import audio as audio_lib


def _define_flags():
    return (
        flags.DEFINE_string("workdir", None, "A SpeechT5 TTS fine-tuning workdir."),
        flags.DEFINE_string("text", None, "The sentence to speak."),
        flags.DEFINE_string("out", None, "The WAV file to write."),
        flags.DEFINE_string("speaker", None, "A training speaker's .spk name."),
        flags.DEFINE_string("xvector", None, "An x-vector file (np.save of float [E])."),
        flags.DEFINE_string("vocoder", None, "HiFi-GAN weights directory (default Griffin-Lim)."),
        flags.DEFINE_float("threshold", 0.5, "Stop-token probability that ends the speech."),
        flags.DEFINE_integer("seed", 0, "Seed of the pre-net dropout."),
        flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest)."),
    )


def run(workdir, text, out, speaker=None, xvector=None, vocoder=None, **options) -> np.ndarray:
    """Synthesises `text` into the WAV file `out` and returns the waveform (InputError /
    ConfigError / CheckpointError for the user's mistakes); options: step, threshold, seed."""
    if speaker is not None and xvector is not None:
        raise config_lib.ConfigError("give --speaker or --xvector, not both")
    out = pathlib.Path(out)
    if not out.parent.is_dir():
        raise config_lib.ConfigError(f"--out {out}: directory {out.parent} does not exist")
    trained = inference.load(workdir, options.pop("step", None), task="tts")
    inference.encode_text(trained, text)  # an empty text fails before anything is compiled
    speakers, xvectors = voice(trained, speaker, xvector)
    vocoder = load_vocoder(vocoder)
    (mel,) = inference.synthesize(trained, [text], speakers, xvectors, **options)
    return write_speech(mel, vocoder, out)


def voice(trained, speaker=None, xvector=None):
    """(speakers [1], x-vectors float [1,E] or None) of one utterance for `--speaker NAME` /
    `--xvector FILE` (also convert_voice.py's)."""
    xvectors = None if xvector is None else inference.read_xvector(trained, xvector)[None]
    return [inference.speaker_index(trained, speaker)], xvectors


def load_vocoder(directory):
    """`--vocoder DIR`'s HiFi-GAN, or None (Griffin-Lim); InputError if it cannot be read."""
    try:
        return waveform.load_hifigan(directory) if directory else None
    except ValueError as e:
        raise inference.InputError(f"--vocoder: {e}") from None


def write_speech(mel, vocoder, out) -> np.ndarray:
    """A log-mel [F, 80] vocoded into the WAV file `out`; returns the waveform."""
    audio = waveform.mel_to_audio(mel, vocoder)
    waveform.write_wav(out, audio)
    return audio


def speak_or_exit(make_audio, out) -> None:
    """A speech CLI's body (also convert_voice.py's): make_audio() writes the WAV file `out`
    and returns its waveform, then `<out><TAB><seconds> s` is printed; the user's mistakes are
    one error line and exit status 2."""
    platforms.skip_absent_accelerators()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        audio = make_audio()
    except (
        config_lib.ConfigError,
        checkpoint_lib.CheckpointError,
        inference.InputError,
        OSError,
    ) as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(2)
    print(f"{out}\t{len(audio) / audio_lib.SAMPLE_RATE:.2f} s")


def main(argv):
    del argv
    v = {f.name: f.value for f in _FLAGS}
    speak_or_exit(lambda: run(**v), v["out"])


def _parse(argv):
    """The flags (no positional arguments, no config overrides); mistakes are one line."""
    extra = config_lib.parse_command_line(argv, ("workdir", "text", "out"), positional=True)
    if extra:
        print(f"FlagsError: unexpected arguments {extra}; see --helpshort", file=sys.stderr)
        sys.exit(2)
    return []


if __name__ == "__main__":
    _FLAGS = _define_flags()
    app.run(main, flags_parser=_parse)
