r"""Transcribes speech files with a SpeechT5 ASR workdir (configs/speecht5_asr_tiny.py), or into
phones with a CTC model's workdir (UniSpeech: configs/tiny.py, configs/finetune_ctc.py); with
a speech translation workdir (configs/speecht5_st_tiny.py) the text is the translation.

    python -m unispeech_jax.transcribe --workdir runs/st5_asr a.wav b.flac ...

prints one `<file><TAB><transcript or translation>` line per file, in the order given. Any format soundfile
reads; other sample rates are resampled to 16 kHz, channels averaged. Files are decoded in
batches (`--batch-size`) with the decoder cache: greedily, or with `--beam K` beam search,
`--length-alpha` length normalisation and `--ctc-weight λ` joint CTC/attention scoring (a
model trained with model.ctc_loss_weight > 0; SpeechT5's recipe decodes with beam 10); a CTC
model's best path, or CTC prefix beam search with `--beam K`. A
missing or unreadable file, or a workdir that is not an ASR or ST fine-tuning run, is one error line
and exit status 2.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import inference, platforms


def _define_flags():
    return (
        flags.DEFINE_string(
            "workdir", None, "A SpeechT5 ASR (or ST: prints translations) fine-tuning workdir."
        ),
        flags.DEFINE_integer("step", None, "Checkpoint step (default: the newest)."),
        flags.DEFINE_integer("batch-size", 8, "Files decoded together."),
        flags.DEFINE_integer("beam", 1, "Beam width (1: greedy)."),
        flags.DEFINE_float("ctc-weight", 0.0, "Joint CTC/attention weight of the CTC score."),
        flags.DEFINE_float("length-alpha", 0.0, "Hypothesis score / length^alpha."),
    )


def run(workdir, files, step=None, batch_size: int = 8, options=None) -> list[str]:
    """Transcripts (st: translations) of `files` by the workdir's model (InputError /
    ConfigError / CheckpointError for the user's mistakes)."""
    if not files:
        raise inference.InputError("no audio files given")
    waves = [inference.read_audio_file(f) for f in files]  # every file checked before loading
    trained = inference.load(workdir, step, task=("asr", "st"))
    return inference.transcribe(trained, waves, batch_size, options or inference.Decoding())


def main(files):
    platforms.skip_absent_accelerators()
    _WORKDIR, _STEP, _BATCH, _BEAM, _CTC_WEIGHT, _ALPHA = _FLAGS
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        options = inference.Decoding(_BEAM.value, _CTC_WEIGHT.value, _ALPHA.value)
        texts = run(_WORKDIR.value, files, _STEP.value, _BATCH.value, options)
    except (
        config_lib.ConfigError,
        checkpoint_lib.CheckpointError,
        inference.InputError,
    ) as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(2)
    for path, text in zip(files, texts):
        print(f"{path}\t{text}")


if __name__ == "__main__":
    _FLAGS = _define_flags()
    app.run(
        main,
        flags_parser=lambda argv: config_lib.parse_command_line(
            argv, ("workdir",), positional=True
        ),
    )
