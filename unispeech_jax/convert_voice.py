r"""Says a speech file again in another voice with a SpeechT5 VC workdir
(configs/speecht5_vc_tiny.py), into a WAV file.

    python -m unispeech_jax.convert_voice --workdir runs/st5_vc --speaker NAME in.wav \
        --out out.wav [--xvector F.npy instead of --speaker] [--vocoder DIR]

The target voice is a training speaker's `.spk` name (`--speaker`), or an x-vector file (np.save
of float [E]) for a model trained on x-vectors. The model generates the log-mel spectrogram of
the converted speech (the pre-net's Tacotron dropout on, drawn from `--seed`; the stop token
ends it, `--threshold`), and Griffin-Lim turns it into 16 kHz audio, or HiFi-GAN with
`--vocoder DIR` (unispeech_jax/waveform.py). The input: any format soundfile reads, resampled
to 16 kHz. A missing or unreadable file, an unknown speaker, a missing workdir or one of
another task is one error line and exit status 2. `unispeech_jax.enhance` (speech
enhancement) runs through the same `run`.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

import pathlib

import numpy as np
from absl import app, flags

from unispeech_jax import config as config_lib
from unispeech_jax import inference, synthesize
from unispeech_jax.errors import usage_error


def define_flags(task: str):
    """The flags of the CLI for `task` ('vc' takes a target voice, 'se' none)."""
    kind = {"vc": "VC", "se": "SE"}[task]
    voice = (
        (
            flags.DEFINE_string("speaker", None, "The target voice: a training speaker's name."),
            flags.DEFINE_string("xvector", None, "The target voice: an x-vector file (.npy)."),
        )
        if task == "vc"
        else ()
    )
    return (
        flags.DEFINE_string("workdir", None, f"A SpeechT5 {kind} fine-tuning workdir."),
        flags.DEFINE_string("out", None, "The WAV file to write."),
        *voice,
        flags.DEFINE_string("vocoder", None, "HiFi-GAN weights directory (default Griffin-Lim)."),
        flags.DEFINE_float("threshold", 0.5, "Stop-token probability that ends the speech."),
        flags.DEFINE_integer("seed", 0, "Seed of the pre-net dropout."),
        flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest)."),
    )


def run(
    workdir, source, out, task: str = "vc", speaker=None, xvector=None, vocoder=None, **options
) -> np.ndarray:
    """Converts (vc: into the voice of `speaker` or the x-vector file `xvector`) or enhances
    (se) the speech file `source` into the WAV file `out` and returns the waveform (InputError
    / ConfigError / CheckpointError for the user's mistakes); options: step, threshold, seed."""
    if speaker is not None and xvector is not None:
        raise config_lib.ConfigError("give --speaker or --xvector, not both")
    out = pathlib.Path(out)
    if not out.parent.is_dir():
        raise config_lib.ConfigError(f"--out {out}: directory {out.parent} does not exist")
    wave = inference.read_audio_file(source)  # checked before loading the model
    trained = inference.load(workdir, options.pop("step", None), task=task)
    if task == "vc" and speaker is None and xvector is None:
        raise config_lib.ConfigError(
            "the target voice is missing: --speaker NAME (a training speaker) or --xvector F.npy"
        )
    speakers, xvectors = synthesize.voice(trained, speaker, xvector)
    vocoder = synthesize.load_vocoder(vocoder)
    (mel,) = inference.convert(trained, [wave], speakers, xvectors, **options)
    return synthesize.write_speech(mel, vocoder, out)


def main(task: str, flag_list, files) -> None:
    """The CLI of `task`: `run` on the one input file (`synthesize.speak_or_exit`)."""
    if len(files) != 1:
        usage_error(f"expected one input audio file, got {files}")
    v = {f.name: f.value for f in flag_list}
    out = v.pop("out")
    synthesize.speak_or_exit(lambda: run(v.pop("workdir"), files[0], out, task, **v), out)


def parse(argv):
    """The flags and the input files (no config overrides); mistakes are one line."""
    return config_lib.parse_command_line(argv, ("workdir", "out"), positional=True)


if __name__ == "__main__":
    _FLAGS = define_flags("vc")
    app.run(lambda files: main("vc", _FLAGS, files), flags_parser=parse)
