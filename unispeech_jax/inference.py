"""A trained SpeechT5 workdir put to use: `load` it (its config.json, text model and the newest
checkpoint that restores cleanly), then `transcribe` speech (asr; st translates), `synthesize`
log-mels (tts), `convert` speech into log-mels (vc, se) or `embed_speakers` (sid). The one
loader and the batched entry points of `transcribe.py`, `synthesize.py`, `convert_voice.py` /
`enhance.py` and the task scoring of `evaluate` (scoring.py).

User input problems (an unreadable audio file, an empty text, a workdir of another task) are
an `InputError` or `ConfigError` with one line naming the file or value, for the CLIs to print.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import soundfile as sf

from unispeech_jax import checkpoint as checkpoint_lib
from unispeech_jax import config as config_lib
from unispeech_jax import decoding, models
from unispeech_jax import metrics as metrics_lib
from unispeech_jax.data import audio as audio_lib
from unispeech_jax.data import features, sources, tasks, workdir_vocab
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
    sp: Any  # SentencePiece model of the text side (SpeechT5)
    phones: Any = None  # PhoneVocab of a CTC model's labels (UniSpeech), else None

    @property
    def task(self) -> str:
        return str(self.config.model.get("task", ""))


def load(workdir, step: int | None = None, task: str | tuple[str, ...] | None = None) -> Trained:
    """Loads a SpeechT5 fine-tuning workdir; with `task` (one or a tuple), refuses one trained
    for another (task 'asr' also takes a model with a CTC head, e.g. UniSpeech, transcribing
    to phones).

    ConfigError: not a directory, not a training workdir (no config.json), not a SpeechT5
    fine-tuning run of `task`. CheckpointError: no checkpoint restores."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise config_lib.ConfigError(f"workdir {workdir} does not exist")
    # Its text ids are those of the SentencePiece model the workdir keeps (data/workdir_vocab.py).
    config = workdir_vocab.pin(config_lib.load_saved(workdir), workdir, keep=False)
    _, spec = tasks.split_config(config)
    family = models.get(config.model.name)
    wanted = (task,) if isinstance(task, str) else task
    if task is not None and "asr" in wanted and spec is None and hasattr(family, "predict_fn"):
        with checkpoint_lib.Checkpoints(workdir, create=False) as ckpt:
            step, state, _ = ckpt.restore_chosen(step)
        params, model_state = checkpoint_lib.variables(state)
        module = family.build(config.model, family.vocab_size(config))
        variables = {"params": params, **model_state}
        return Trained(
            workdir, config, module, variables, int(step), None, sources.vocab(config.data)
        )
    if task is not None and (spec is None or spec.name not in wanted):
        trained_for = f"model.task {spec.name!r}" if spec else f"model {config.model.name!r}"
        raise config_lib.ConfigError(
            f"workdir {workdir} was trained for {trained_for}; this needs a SpeechT5 "
            f"model.task {' or '.join(map(repr, wanted))} workdir"
        )
    if spec is None:
        raise config_lib.ConfigError(
            f"workdir {workdir} is not a SpeechT5 fine-tuning run (model.task asr, tts, st, ...)"
        )
    with checkpoint_lib.Checkpoints(workdir, create=False) as ckpt:
        step, state, _ = ckpt.restore_chosen(step)
    return assemble(workdir, config, *checkpoint_lib.variables(state), step)


def assemble(workdir, config, params, model_state, step: int) -> Trained:
    """A `Trained` of a SpeechT5 fine-tuning run's config (its vocabulary pinned to the
    workdir's) and restored variables (in any layer layout)."""
    _, spec = tasks.split_config(config)
    family = models.get(config.model.name)
    sp = text_lib.load_sp(sources.task_sentencepiece_model(config.data, spec.name))
    module = family.build(config.model, text_lib.text_vocab_size(sp))
    params, model_state = checkpoint_lib.variables(
        {"params": params, "model_state": model_state},
        models.abstract_variables(family, module, config.data),
    )
    variables = {"params": params, **model_state}
    return Trained(pathlib.Path(workdir), config, module, variables, int(step), sp)


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
        if trained.phones is not None and self.ctc_weight > 0:
            raise config_lib.ConfigError(
                f"--ctc-weight: {trained.workdir} is a CTC model, decoded by CTC alone (greedy, "
                "or prefix beam search with --beam)"
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


@functools.partial(jax.jit, static_argnames=("family", "module", "beam"))
def _ctc_search(family, module, variables, audio, audio_mask, beam: int):
    """Best label path (greedy: per-frame argmax, collapsed on host) or prefix beam search of
    a CTC model → (int32 [B,N], lengths int32 [B])."""
    batch = {"audio": audio, "audio_mask": audio_mask}
    logits, valid = family.predict_fn(module, variables["params"], batch)
    lengths = valid.sum(-1).astype(jnp.int32)
    if beam == 1:
        return jnp.argmax(logits, -1).astype(jnp.int32), lengths
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    out = decoding.ctc.prefix_beam_search(log_probs, lengths, beam=beam)
    return out["tokens"][:, 0], out["lengths"][:, 0]


def recognize_ctc(trained: Trained, audio, audio_mask, options: Decoding = Decoding()):
    """Label ids of a batch by a CTC model (audio float [B,S], audio_mask bool [B,S]):
    greedy (`decoding.collapse_ctc` of the best path) or CTC prefix beam search."""
    family = models.get(trained.config.model.name)
    ids, lengths = _ctc_search(
        family, trained.module, trained.variables, jnp.asarray(audio), audio_mask, options.beam
    )
    ids, lengths = np.asarray(ids), np.asarray(lengths)
    if options.beam == 1:
        return [decoding.collapse_ctc(row[:n]) for row, n in zip(ids, lengths)]
    return [row[:n].tolist() for row, n in zip(ids, lengths)]


def to_text(trained: Trained, ids) -> str:
    """Output ids → text: SentencePiece pieces (ids past them, e.g. the infilling mask, are no
    text and left out), or a CTC model's space-separated phones (`|` between words), or the
    words its letters spell (`data.labels='ltr'`)."""
    if trained.phones is not None:
        units = metrics_lib.ids_to_string(ids, trained.phones.symbols, ignore=())
        return text_lib.letter_words(units) if trained.config.data.labels == "ltr" else units
    pieces = trained.sp.get_piece_size()
    return text_lib.sp_decode(trained.sp, [t for t in ids if t < pieces])


def transcribe(
    trained: Trained,
    waves: Sequence[np.ndarray],
    batch_size: int = 8,
    options: Decoding = Decoding(),
) -> list[str]:
    """Waveforms float [S_i] at 16 kHz → their transcripts, `batch_size` at a time (longest
    first, so that each batch pads little)."""
    options.check(trained)
    if trained.config.data.normalize:  # the model was trained on normalised waveforms
        waves = [audio_lib.normalize(w) for w in waves]
    order = sorted(range(len(waves)), key=lambda i: -len(waves[i]))
    search = recognize if trained.phones is None else recognize_ctc
    texts = [""] * len(waves)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        audio, mask = pad_rows([waves[i] for i in chunk], AUDIO_BUCKET)
        for i, ids in zip(chunk, search(trained, audio, mask, options)):
            texts[i] = to_text(trained, ids)
    return texts


# ============================================================================ SID


@functools.partial(jax.jit, static_argnames=("module",))
def _embed(module, variables, audio, audio_mask):
    def forward(self):
        enc = self.encode_speech(audio, audio_mask)
        embedding = self.utterance_embedding(enc["hidden"], enc["valid"])
        return embedding, self.speaker_logits(embedding)

    return module.apply(variables, method=forward)


def embed_speakers(
    trained: Trained, waves: Sequence[np.ndarray], batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Waveforms float [S_i] at 16 kHz → a speaker identification model's (utterance
    embeddings float32 [N,E], speaker logits float32 [N,C]), `batch_size` at a time, longest
    first (the pooling reads valid frames only)."""
    if trained.config.data.normalize:
        waves = [audio_lib.normalize(w) for w in waves]
    a = trained.module.args
    embeddings = np.zeros((len(waves), a.speaker_embedding_dim), np.float32)
    logits = np.zeros((len(waves), max(a.num_speakers, 1)), np.float32)
    order = sorted(range(len(waves)), key=lambda i: -len(waves[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        audio, mask = pad_rows([waves[i] for i in chunk], AUDIO_BUCKET)
        e, z = _embed(trained.module, trained.variables, jnp.asarray(audio), jnp.asarray(mask))
        embeddings[chunk], logits[chunk] = np.asarray(e), np.asarray(z)
    return embeddings, logits


# ============================================================================ TTS

# A decoder step may produce this many mel frames per input token at most (speech runs at
# 4-6 frames of 16 ms per character), plus MEL_FRAMES_EXTRA.
MEL_FRAMES_PER_TOKEN = 12
MEL_FRAMES_EXTRA = 32


@functools.partial(jax.jit, static_argnames=("module", "speech_input", "max_frames", "threshold"))
def _generate(module, variables, inputs, mask, speaker, rng, speech_input, max_frames, threshold):
    """`decoding.speecht5.convert` of audio (speech_input) or `synthesize` of tokens."""
    run = decoding.speecht5.convert if speech_input else decoding.speecht5.synthesize
    return run(
        module,
        variables,
        inputs,
        mask,
        speaker,
        rng=rng,
        max_frames=max_frames,
        threshold=threshold,
    )


def _generate_rows(trained, inputs, mask, width, limits, speakers, xvectors, threshold, seed):
    """Log-mels [F_i, 80] of a padded batch of tokens int [B,L] or audio float [B,S] (`mask`
    bool alike), generated up to `width` frames (one compilation per width), each cut at its
    stop token and at most `limits[i]` frames."""
    speech_input = inputs.dtype.kind == "f"
    mel, lengths = _generate(
        trained.module,
        trained.variables,
        jnp.asarray(inputs),
        jnp.asarray(mask),
        speaker_input(trained, len(inputs), speakers, xvectors),
        jax.random.key(seed),
        speech_input,
        max_frames=width,
        threshold=threshold,
    )
    mel, lengths = np.asarray(mel), np.asarray(lengths)
    return [m[: min(n, limit)] for m, n, limit in zip(mel, lengths, limits)]


def speaker_index(trained: Trained, name: str | None) -> int:
    """Row of the speaker table for a training speaker's `.spk` name (None: -1, the mean
    voice); ConfigError naming the known speakers otherwise."""
    if name is None:
        return -1
    data_cfg = trained.config.data
    names = sources.speaker_names(sources.resolve_data_dir(data_cfg), data_cfg)
    if name not in names:
        shown = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        raise config_lib.ConfigError(f"--speaker {name!r} is not a training speaker ({shown})")
    return names.index(name)


def read_xvector(trained: Trained, path) -> np.ndarray:
    """An x-vector file (np.save of float [E] or [1, E]) as float32 [E]; InputError if it
    cannot be read or its width is not the model's speaker_embedding_dim."""
    try:
        x = np.load(str(path), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read an x-vector ({e})") from None
    width = trained.module.args.speaker_embedding_dim
    x = np.asarray(x, np.float32).reshape(-1) if np.ndim(x) in (1, 2) and len(x) else None
    if x is None or x.shape != (width,) or not np.isfinite(x).all():
        raise InputError(f"{path}: expected {width} finite floats (an x-vector)")
    return x


def speaker_input(trained: Trained, batch: int, speakers=None, xvectors=None):
    """The speaker input of a batch of `batch` as the model was trained: its table's rows of
    `speakers` (int [B], -1 or None the mean voice), the given `xvectors` float [B,E], or None
    for a model trained without speakers. ConfigError when the given kind does not fit."""
    a, data_cfg = trained.module.args, trained.config.data
    if xvectors is not None:
        if not data_cfg.speaker_embeddings:
            raise config_lib.ConfigError(
                f"{trained.workdir} was trained without x-vectors; use --speaker or neither"
            )
        return jnp.asarray(xvectors, jnp.float32)
    if data_cfg.speaker_embeddings:
        raise config_lib.ConfigError(
            f"{trained.workdir} was trained on x-vectors (data.speaker_embeddings): pass --xvector"
        )
    if a.num_speakers > 0:
        rows = jnp.full((batch,), -1, jnp.int32) if speakers is None else jnp.asarray(speakers)
        return trained.module.apply(trained.variables, rows, method="speaker_vectors")
    if speakers is not None and np.any(np.asarray(speakers) >= 0):
        raise config_lib.ConfigError(f"{trained.workdir} was trained without a speaker table")
    return None


def synthesize(
    trained: Trained,
    texts: Sequence[str],
    speakers=None,
    xvectors=None,
    threshold: float = 0.5,
    seed: int = 0,
) -> list[np.ndarray]:
    """Sentences → log-mels float32 [F_i, 80] (the model's target features), in one batch with
    the decoder cache; speakers / xvectors as for `speaker_input` (one per text). The stop
    token ends each utterance (sum of a step's stop probabilities >= threshold), at the latest
    after MEL_FRAMES_PER_TOKEN frames per token; `seed` draws the pre-net's always-on dropout,
    whose mask is shared by the batch, so a row does not depend on the rest of the batch."""
    return synthesize_tokens(
        trained, [encode_text(trained, t) for t in texts], speakers, xvectors, threshold, seed
    )


def synthesize_tokens(
    trained: Trained, rows, speakers=None, xvectors=None, threshold: float = 0.5, seed: int = 0
) -> list[np.ndarray]:
    """`synthesize` of texts already encoded: rows of int32 ids + </s>."""
    tokens, mask = pad_rows(rows, TEXT_BUCKET, text_lib.pad_token_id(trained.sp))
    limits = [len(r) * MEL_FRAMES_PER_TOKEN + MEL_FRAMES_EXTRA for r in rows]
    width = tokens.shape[1] * MEL_FRAMES_PER_TOKEN + MEL_FRAMES_EXTRA
    return _generate_rows(trained, tokens, mask, width, limits, speakers, xvectors, threshold, seed)


# ============================================================================ VC, SE

# A converted utterance may be this many times the source's log-mel frames long at most
# (speaking rates of two voices differ by less), plus MEL_FRAMES_EXTRA.
MEL_FRAMES_PER_SOURCE_FRAME = 2


def convert(
    trained: Trained,
    waves: Sequence[np.ndarray],
    speakers=None,
    xvectors=None,
    threshold: float = 0.5,
    seed: int = 0,
) -> list[np.ndarray]:
    """Waveforms float [S_i] at 16 kHz → log-mels float32 [F_i, 80] of the same speech, in one
    batch with the decoder cache: in the voice of `speakers` / `xvectors` (one per wave, as
    for `speaker_input`; vc) or cleaned (se). The stop token ends each utterance (as in
    `synthesize`), at the latest after MEL_FRAMES_PER_SOURCE_FRAME times its source's frames.
    Audio is padded to a multiple of AUDIO_BUCKET samples; the speech encoder's output depends
    on that padded width (as for `transcribe`), not on the other rows."""
    if trained.config.data.normalize:  # the model was trained on normalised waveforms
        waves = [audio_lib.normalize(w) for w in waves]
    audio, mask = pad_rows(waves, AUDIO_BUCKET)

    def limit(samples):
        return MEL_FRAMES_PER_SOURCE_FRAME * int(features.mel_frames(samples)) + MEL_FRAMES_EXTRA

    limits = [limit(len(w)) for w in waves]
    return _generate_rows(
        trained, audio, mask, limit(audio.shape[1]), limits, speakers, xvectors, threshold, seed
    )
