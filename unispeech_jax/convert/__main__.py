r"""Converts a Hugging Face SpeechT5 model directory into a workdir of this stack, and back.

    python -m unispeech_jax.convert --from-hf DIR --to W [--config FILE] [--spm FILE] \
        [--config.KEY=VALUE ...]
    python -m unispeech_jax.convert --from W --to-hf DIR [--step N]

DIR is what `save_pretrained` wrote for SpeechT5ForSpeechToText, SpeechT5ForTextToSpeech or
SpeechT5ForSpeechToSpeech (config.json, model.safetensors) with the tokenizer's
spm_char.model. W then takes `evaluate`, `transcribe` / `synthesize` and
`--config.init_from`; its run config is `--config` (default configs/speecht5_asr_base.py or
speecht5_tts_base.py by the class) with the model HF describes (convert/hf_workdir.py). A
missing directory, a model of another family or class, or a workdir HF has no class for is one
error line and exit status 2.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import platforms
from unispeech_jax.convert import hf_workdir
from unispeech_jax.data.stats import DataError


def _define_flags():
    return (
        flags.DEFINE_string("from-hf", None, "A Hugging Face SpeechT5 save_pretrained directory."),
        flags.DEFINE_string("to", None, "The workdir to write (with --from-hf)."),
        flags.DEFINE_string("config", None, "Run config the workdir records (with --from-hf)."),
        flags.DEFINE_string("spm", None, "SentencePiece model (default DIR/spm_char.model)."),
        flags.DEFINE_string("from", None, "A SpeechT5 fine-tuning workdir."),
        flags.DEFINE_string("to-hf", None, "The Hugging Face directory to write (with --from)."),
        flags.DEFINE_integer("step", None, "Checkpoint step of --from (default: the newest)."),
    )


def run(overrides, from_hf, to, config, spm, from_workdir, to_hf, step):
    """One direction of the conversion; ConfigError for a wrong flag combination."""
    if from_hf is not None and to is not None and from_workdir is None and to_hf is None:
        return hf_workdir.import_hf(from_hf, to, config, overrides, spm)
    if from_workdir is not None and to_hf is not None and from_hf is None and to is None:
        if overrides or config or spm:
            raise config_lib.ConfigError("--config/--spm go with --from-hf, not --from")
        return hf_workdir.export_hf(from_workdir, to_hf, step)
    raise config_lib.ConfigError("give --from-hf DIR --to W, or --from W --to-hf DIR")


def main(overrides):
    platforms.skip_absent_accelerators()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        out = run(overrides, *(f.value for f in _FLAGS))
    except (config_lib.ConfigError, checkpoint_lib.CheckpointError, DataError) as e:
        logging.error("%s: %s", type(e).__name__, e)
        sys.exit(2)
    print(out)


if __name__ == "__main__":
    _FLAGS = _define_flags()
    app.run(main, flags_parser=config_lib.parse_command_line)
