"""A trained SpeechT5 workdir put to use: `load` it (its config.json, text model and the newest
checkpoint that restores cleanly), then `transcribe` speech (asr) or `synthesize` log-mels
(tts). The one loader and the batched entry points of `transcribe.py`, `synthesize.py` and the
task scoring of `evaluate` (scoring.py).

User input problems (an unreadable audio file, an empty text, a workdir of another task) are
an `InputError` or `ConfigError` with one line naming the file or value, for the CLIs to print.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import librosa
import numpy as np
import soundfile as sf

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import decoding, models
from unispeech_jax.data import audio as audio_lib
from unispeech_jax.data import sources, tasks, workdir_vocab
from unispeech_jax.data import text as text_lib

# Audio batches are padded to a multiple of this many samples (one compilation per multiple).
AUDIO_BUCKET = 16_000
# Text batches are padded to a multiple of this many tokens.
TEXT_BUCKET = 32
# Decoding stops at this many output tokens per second of input speech (characters: speech
# runs at 10-20 of them a second) unless the model's max_text_positions is lower.
TOKENS_PER_SECOND = 30


class InputError(ValueError):
    """User input that cannot be used (the message names the file or value and why)."""


@dataclasses.dataclass(frozen=True)
class Trained:
    """A workdir's model ready to run: `variables` = {'params', **non-trainable collections}."""

    workdir: pathlib.Path
    config: Any
    module: Any
    variables: Any
    step: int
    sp: Any  # SentencePiece model of the text side

    @property
    def task(self) -> str:
        return str(self.config.model.get("task", ""))


def load(workdir, step: int | None = None, task: str | None = None) -> Trained:
    """Loads a SpeechT5 fine-tuning workdir; with `task`, refuses one trained for another.

    ConfigError: not a directory, not a training workdir (no config.json), not a SpeechT5
    fine-tuning run of `task`. CheckpointError: no checkpoint restores."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise config_lib.ConfigError(f"workdir {workdir} does not exist")
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise config_lib.ConfigError(f"{config_file} not found: is {workdir} a training workdir?")
    # Its text ids are those of the SentencePiece model the workdir keeps (data/workdir_vocab.py).
    config = workdir_vocab.pin(config_lib.from_json(config_file.read_text()), workdir, keep=False)
    _, spec = tasks.split_config(config)
    if task is not None and (spec is None or spec.name != task):
        trained_for = f"model.task {spec.name!r}" if spec else f"model {config.model.name!r}"
        raise config_lib.ConfigError(
            f"workdir {workdir} was trained for {trained_for}; this needs a SpeechT5 "
            f"model.task {task!r} workdir"
        )
    family = models.get(config.model.name)
    sp = text_lib.load_sp(sources.task_sentencepiece_model(config.data, spec.name))
    module = family.build(config.model, text_lib.text_vocab_size(sp))
    with checkpoint_lib.Checkpoints(workdir, create=False) as ckpt:
        step, state, _ = ckpt.restore_chosen(step)
    params, model_state = checkpoint_lib.variables(state)
    return Trained(workdir, config, module, {"params": params, **model_state}, int(step), sp)


# ============================================================================ input


def read_audio_file(path) -> np.ndarray:
    """A speech file as float32 [S] at 16 kHz mono (other rates resampled, channels averaged).
    InputError naming the file if it cannot be read or holds no finite samples."""
    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types; all mean "cannot decode"
        raise InputError(f"{path}: cannot read audio ({type(e).__name__}: {e})") from None
    if x.shape[0] == 0:
        raise InputError(f"{path}: the file holds no audio samples")
    x = x.mean(axis=1)
    if not np.isfinite(x).all():
        raise InputError(f"{path}: the audio has non-finite samples")
    if rate != audio_lib.SAMPLE_RATE:
        x = librosa.resample(x, orig_sr=rate, target_sr=audio_lib.SAMPLE_RATE)
    return x.astype(np.float32)


def pad_rows(rows: Sequence[np.ndarray], multiple: int, fill=0) -> tuple[np.ndarray, np.ndarray]:
    """Rows of varying length [n_i, ...] → (padded [B, N, ...], mask bool [B, N]), N the
    longest rounded up to `multiple`, padding = `fill`."""
    width = -(-max(len(r) for r in rows) // multiple) * multiple
    first = np.asarray(rows[0])
    out = np.full((len(rows), width, *first.shape[1:]), fill, first.dtype)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = True
    return out, mask


def encode_text(trained: Trained, text: str) -> np.ndarray:
    """A sentence → int32 SentencePiece ids + </s>; InputError if it has no text."""
    ids = text_lib.sp_encode(trained.sp, text.strip(), add_eos=True)
    if not text.strip() or len(ids) < 2:
        raise InputError(f"text {text!r} is empty: nothing to synthesise")
    return np.asarray(ids, np.int32)


# ============================================================================ ASR


def max_tokens(model_args, samples) -> np.ndarray:
    """Most output tokens for speech of `samples` (int array): TOKENS_PER_SECOND per second,
    at most the model's max_text_positions."""
    seconds = np.asarray(samples) / audio_lib.SAMPLE_RATE
    return np.minimum(model_args.max_text_positions, np.ceil(seconds * TOKENS_PER_SECOND) + 2)


@dataclasses.dataclass(frozen=True)
class Decoding:
    """How `recognize` searches: beam width, CTC weight λ of joint CTC/attention scoring (needs
    a model trained with a CTC head) and the length normalisation exponent."""

    beam: int = 1
    ctc_weight: float = 0.0
    length_alpha: float = 0.0

    def check(self, trained: Trained) -> None:
        """ConfigError for options the model or the search cannot take."""
        if self.beam < 1 or not 0.0 <= self.ctc_weight <= 1.0:
            raise config_lib.ConfigError(
                f"--beam={self.beam} must be >= 1 and --ctc-weight={self.ctc_weight} in [0, 1]"
            )
        if self.ctc_weight > 0 and trained.module.args.ctc_loss_weight <= 0:
            raise config_lib.ConfigError(
                f"--ctc-weight={self.ctc_weight}: {trained.workdir} has no CTC head (trained "
                "with model.ctc_loss_weight=0)"
            )


def recognize(trained: Trained, audio, audio_mask, options: Decoding = Decoding()):
    """Token ids of a batch: audio float [B,S], audio_mask bool [B,S] → per utterance the ids
    before its </s>, at most `max_tokens` of its length (decoding.speecht5.recognize with the
    decoder cache; greedy when beam is 1 without CTC, and then a row's result does not depend
    on the rest of the batch)."""
    a = trained.module.args
    limits = max_tokens(a, np.asarray(audio_mask).sum(1)).astype(int)
    ids = decoding.speecht5.recognize(
        trained.module,
        trained.variables,
        jnp.asarray(audio),
        jnp.asarray(audio_mask),
        max_length=int(max_tokens(a, audio.shape[1])),
        beam=options.beam,
        ctc_weight=options.ctc_weight,
        length_alpha=options.length_alpha,
        ctc_blank_id=a.ctc_blank_id,
    )
    return [row[:limit] for row, limit in zip(ids, limits)]


def transcribe(
    trained: Trained,
    waves: Sequence[np.ndarray],
    batch_size: int = 8,
    options: Decoding = Decoding(),
) -> list[str]:
    """Waveforms float [S_i] at 16 kHz → their transcripts, `batch_size` at a time (longest
    first, so that each batch pads little)."""
    options.check(trained)
    order = sorted(range(len(waves)), key=lambda i: -len(waves[i]))
    texts = [""] * len(waves)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        audio, mask = pad_rows([waves[i] for i in chunk], AUDIO_BUCKET)
        for i, ids in zip(chunk, recognize(trained, audio, mask, options)):
            texts[i] = text_lib.sp_decode(trained.sp, ids)
    return texts
