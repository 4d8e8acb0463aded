"""Fine-tuning task batches: the widths of a bucket's text and mel, the planning length of
an example, and the decoder of planned task batches (docs/ARCHITECTURE.md, "Task batches").

Buckets pair the speech and the text side: bucket k pads speech to `bucket_boundaries[k]`
samples, text to `text_bucket_boundaries[k]` tokens and mel to the frames of that many samples
rounded up to a multiple of `model.reduction_factor`. An example goes to the smallest bucket
that holds both its sides (`planning_lengths`: the longer side, text measured in the samples
of its bucket), so data/batching.py plans task batches exactly as speech batches. Evaluation's
extra buckets past the largest (multiples m of it) pad text to m times the largest text width.
"""

from __future__ import annotations

import numpy as np

from unispeech_jax.data import features, tasks
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.audio import normalize, read_audio
from unispeech_jax.data.batching import batch_size_for
from unispeech_jax.data.data_config import DataConfig
from unispeech_jax.data.decode import DECODE_CODES, read_input
from unispeech_jax.data.task_split import TaskSplit


def text_width(cfg: DataConfig, bucket_len: int) -> int:
    """Token width of the bucket of `bucket_len` samples."""
    speech, text = cfg.bucket_boundaries, cfg.text_bucket_boundaries
    if bucket_len in speech:
        return int(text[speech.index(bucket_len)])
    return int(text[-1]) * (int(bucket_len) // speech[-1])


def mel_width(bucket_len: int, reduction_factor: int) -> int:
    """Mel frames of the bucket of `bucket_len` samples: a multiple of the reduction factor."""
    r = reduction_factor
    return -(-features.mel_frames(int(bucket_len)) // r) * r


def planning_lengths(cfg: DataConfig, split: TaskSplit) -> np.ndarray:
    """int64 [n]: the samples an example plans as, so that its bucket holds both sides."""
    lengths = split.speech_lengths()
    if split.task in tasks.TEXT:
        tokens = np.asarray([len(t) for t in split.tokens], np.int64)
        speech, text = np.asarray(cfg.bucket_boundaries), np.asarray(cfg.text_bucket_boundaries)
        k = np.searchsorted(text, tokens, side="left")
        over = speech[-1] * -(-tokens // text[-1])  # past the largest: its multiples
        as_samples = np.where(k < len(text), speech[np.minimum(k, len(text) - 1)], over)
        lengths = np.maximum(lengths, as_samples)
    return lengths


def outputs(
    task: tasks.TaskSpec, embedding_dim: int, with_utterance: bool
) -> list[tuple[str, type, tuple]]:
    """(key, dtype, row shape; None = the bucket's width) of `task`'s batches; embedding_dim
    > 0 adds `speaker_embedding`, `with_utterance` the example index (evaluation)."""
    t, out = task.name, []
    if t in tasks.SPEECH_INPUT:
        out += [("audio", np.float32, (None,)), ("audio_mask", bool, (None,))]
    if t in tasks.TEXT:
        out += [("text", np.int32, (None,)), ("text_mask", bool, (None,))]
    if t in tasks.MEL:
        out += [("mel", np.float32, (None, features.MEL_BINS)), ("mel_mask", bool, (None,))]
    if t in tasks.SPEAKER:
        out += [("speaker", np.int32, ())]
    if embedding_dim:
        out += [("speaker_embedding", np.float32, (embedding_dim,))]
    out += [("weight", np.float32, ())]
    if with_utterance:
        out += [("utterance", np.int32, ())]
    return out


def _widths(cfg: DataConfig, task: tasks.TaskSpec, bucket_len: int) -> dict[str, int]:
    """The width of each variable axis of a batch of the bucket `bucket_len`."""
    return {
        "audio": bucket_len,
        "text": text_width(cfg, bucket_len),
        "mel": mel_width(bucket_len, task.reduction_factor),
    }


def batch_shapes(
    spec: list, cfg: DataConfig, task: tasks.TaskSpec, rows: int, bucket_len: int
) -> dict[str, tuple]:
    """{key: (shape, dtype)} of the `spec` (`outputs`) arrays of `rows` rows of the bucket."""
    widths = _widths(cfg, task, bucket_len)
    shapes = {}
    for key, dtype, shape in spec:
        axis = widths[key.removesuffix("_mask")] if shape and shape[0] is None else None
        full = (rows, *((axis,) if axis else ()), *(d for d in shape if d is not None))
        shapes[key] = (full, np.dtype(dtype))
    return shapes


def _blank(
    spec: list, cfg: DataConfig, task: tasks.TaskSpec, rows: int, bucket_len: int, pad_id: int
) -> dict[str, np.ndarray]:
    """Arrays of `spec` for `rows` rows of the bucket, filled with their padding values."""
    fills = {"text": pad_id, "speaker": -1}
    return {
        key: np.full(shape, fills.get(key, 0), dtype)
        for key, (shape, dtype) in batch_shapes(spec, cfg, task, rows, bucket_len).items()
    }


def dummy_batch(cfg: DataConfig, task: tasks.TaskSpec, embedding_dim: int = 0) -> dict:
    """A zero (padding) batch of `task` in the largest training bucket, global batch size:
    the shapes and dtypes a model is initialised with."""
    bucket = cfg.bucket_boundaries[-1]
    rows = batch_size_for(cfg, bucket)
    return _blank(outputs(task, embedding_dim, False), cfg, task, rows, bucket, 0)


class TaskDecoder:
    """Decodes the host-local rows of one planned task batch (data/decode.py's decoder)."""

    def __init__(
        self,
        split: TaskSplit,
        cfg: DataConfig,
        task: tasks.TaskSpec,
        sp,
        seed: int,
        augment,
        with_utterance: bool,
    ):
        self.split, self.cfg, self.task, self.seed, self.augment = split, cfg, task, seed, augment
        self.pad_id = text_lib.pad_token_id(sp) if sp is not None else 0
        embedding_dim = 0 if split.xvectors is None else split.xvectors.shape[1]
        self.outputs = outputs(task, embedding_dim, with_utterance)
        self.cleared: dict = {}
        self.details: dict[int, str] = {}

    def where(self, i: int) -> str:
        return self.split.where[i]

    def __call__(self, epoch, bucket_len, index, weight):
        """Examples `index` (int64 [b]) padded to the bucket `bucket_len` -> status int32 [b],
        cropped bool [b] (never), then the arrays of `outputs`."""
        b, bucket_len = len(index), int(bucket_len)
        batch = _blank(self.outputs, self.cfg, self.task, b, bucket_len, self.pad_id)
        batch["weight"][:] = weight
        status = np.zeros(b, np.int32)
        for r, i in enumerate(index):
            problem = self._decode_row(batch, r, int(i), int(epoch), bucket_len)
            if problem is not None:
                status[r] = DECODE_CODES[problem[0]]
                self.details[int(i)] = problem[1]
        return (status, np.zeros(b, bool), *batch.values())

    def _decode_row(self, batch: dict, r: int, i: int, epoch: int, bucket_len: int):
        """Fills row r with example i; (skip reason, detail) if its audio is unusable."""
        split, cfg, t = self.split, self.cfg, self.task.name
        if t in tasks.SPEECH_INPUT:
            n = int(split.audio_lengths[i])
            x, reason, detail = read_input(
                split.audio_paths[i], n, 0, n, cfg, self.augment, self.seed, epoch, i, bucket_len
            )
            if reason is not None:
                return reason, detail
            batch["audio"][r, : len(x)] = normalize(x) if cfg.normalize else x
            batch["audio_mask"][r, : len(x)] = True
        if t in tasks.MEL:  # of the target waveform as read, as the pre-training mel
            n = int(split.mel_lengths[i])
            y, reason, detail = read_audio(split.mel_paths[i], n, 0, n, cfg.sample_rate)
            if reason is not None:
                return reason, f"{split.mel_paths[i]}: {detail}"
            mel = features.log_mel(y, cfg.sample_rate)
            batch["mel"][r, : len(mel)] = mel
            batch["mel_mask"][r, : len(mel)] = True
        if t in tasks.TEXT:
            ids = split.tokens[i]
            batch["text"][r, : len(ids)] = ids
            batch["text_mask"][r, : len(ids)] = True
        if "speaker" in batch:
            batch["speaker"][r] = split.speaker[i]
        if "speaker_embedding" in batch:
            batch["speaker_embedding"][r] = split.xvectors[i]
        if "utterance" in batch:
            batch["utterance"][r] = i
        return None
