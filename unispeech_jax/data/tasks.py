"""The SpeechT5 fine-tuning tasks as the input pipeline sees them: which task a run config
asks for, and what each task's batches are made of (docs/ARCHITECTURE.md, "Task batches").

`config.model.task` is the one key: a run config whose `model.name` is 'speecht5' and whose
`model.task` is one of `TASKS` gets that task's paired batches from
`pipeline.make_train_iter(config, ...)` / `make_eval_iter`; any other config, or a bare
`config.data` block, gets speech (pre-training) batches.
"""

from __future__ import annotations

import dataclasses

TASKS = ("asr", "tts", "st", "vc", "se", "sid")

# What each task's batches carry (beyond `weight`).
SPEECH_INPUT = frozenset({"asr", "st", "vc", "se", "sid"})  # `audio`, `audio_mask`
TEXT = frozenset({"asr", "st", "tts"})  # `text`, `text_mask`
MEL = frozenset({"tts", "vc", "se"})  # `mel`, `mel_mask` of the target speech
SPEAKER = frozenset({"tts", "vc", "se", "sid"})  # `speaker` (and `speaker_embedding`)
# The line of <split>.<ext> each text task reads: the transcript, or the translation (st).
TEXT_FILE = {"asr": "wrd", "tts": "wrd", "st": "tgt"}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The model settings a task's batches depend on."""

    name: str
    reduction_factor: int = 1  # the mel frames of a batch are a multiple of it
    speaker_embedding_dim: int = 0  # x-vector width the model takes; 0 = not checked


def split_config(config) -> tuple[object, TaskSpec | None]:
    """(data block, fine-tuning task) of a run config (a ConfigDict or mapping with `data` and
    `model`); the task is None for speech pre-training batches (another family or task
    'pretrain'). A bare data block is returned as is, with None."""
    keys = config.keys() if hasattr(config, "keys") else ()
    if "model" not in keys or "data" not in keys:
        return config, None
    model = config["model"]
    name = model.get("task", "pretrain")
    if model.get("name") != "speecht5" or name not in TASKS:
        return config["data"], None
    spec = TaskSpec(
        name, int(model.get("reduction_factor", 1)), int(model.get("speaker_embedding_dim", 0))
    )
    return config["data"], spec


def batch_keys(task: str, speaker_embedding: bool = False) -> tuple[str, ...]:
    """The keys of a training batch of `task` (eval batches add `utterance`)."""
    keys = []
    if task in SPEECH_INPUT:
        keys += ["audio", "audio_mask"]
    if task in TEXT:
        keys += ["text", "text_mask"]
    if task in MEL:
        keys += ["mel", "mel_mask"]
    if task in SPEAKER:
        keys += ["speaker"] + (["speaker_embedding"] if speaker_embedding and task != "sid" else [])
    return (*keys, "weight")
