"""The `config.data` block: every key the input pipeline reads, its default, and the checks
that turn a malformed or inconsistent value into one `DataError` line naming the key.

    cfg = resolve(config.data)      # DataConfig: defaults filled in, types converted, checked
    check_config(config.data, task) # the same checks, and those of a fine-tuning task
                                    # (data/tasks.py); config.validate calls it
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from unispeech_jax.data import augment as augment_lib
from unispeech_jax.data import tasks
from unispeech_jax.data.audio import SAMPLE_RATE
from unispeech_jax.data.stats import DataError


def default_config() -> ml_collections.ConfigDict:
    """The `config.data` block with every key the input pipeline reads."""
    return ml_collections.ConfigDict(dict(_DEFAULTS, corpus=dict(_DEFAULTS["corpus"])))


_DEFAULTS: dict[str, Any] = dict(
    source="espeak",  # 'espeak' | 'manifest' | 'tfds'
    # The eSpeak corpus (data/corpus.py; every key is part of its cache key). noise_snr: SNRs
    # in dB of noisy copies (se), one drawn per utterance, () = clean corpus only (a bare
    # number is one SNR, 0 or None none); parallel: each sentence spoken by that many speakers
    # (vc pairs); translations: a file of 'source<TAB>translation' lines to speak instead of
    # faker text (st; e.g. from data/sword.py).
    corpus=dict(
        hours=1.0,
        languages="en-us",
        noise_snr=(),
        reverb=False,
        seed=0,
        parallel=1,
        translations="",
    ),
    manifest_dir="",
    tfds_name="",
    tfds_data_dir="",
    tfds_audio_key="speech",
    tfds_text_key="text",
    train_split="train",
    eval_split="valid",
    test_split="test",
    labels="phn",  # label file extension; '' = no labels (all unlabelled)
    vocab_path="",  # phone dict; default <data dir>/dict.<labels>.txt
    labelled_fraction=1.0,
    # Train on the labelled rows only: CTC fine-tuning on a labelled subset, where unlabelled
    # utterances would cost a forward/backward pass each and add nothing. Needs crop=False.
    labelled_only=False,
    # Manifests (.tsv paths) whose utterances join the training split without transcripts.
    unlabelled_manifests=(),
    sample_rate=SAMPLE_RATE,
    normalize=False,
    crop=True,  # speech pre-training batches; task batches are never cropped
    min_sample_len=8000,
    max_sample_len=96000,
    bucket_boundaries=(32000, 48000, 64000, 96000),
    max_samples_per_batch=384000,
    batch_multiple=8,
    max_label_len=256,
    shuffle=True,
    shuffle_buffer=1000,  # shuffle_buffer: streaming (tfds) sources only
    prefetch=2,
    num_parallel_calls=2,
    strict=False,
    # Training-only waveform augmentation (data/augment.py); 0 turns a part off.
    augment_speed=0.0,  # speed factor from U[1-a, 1+a] (pitch, formants, tempo)
    augment_tilt_db=0.0,  # spectral tilt from U[-t, t] dB/octave about 1 kHz
    augment_bumps_db=0.0,  # equaliser gains from U[-b, b] dB at 150 Hz..4.8 kHz
    augment_reverb_prob=0.0,  # chance of a room: synthetic, or one of augment_rir_dir's
    augment_rir_dir="",  # folder of room impulse responses (*.wav, searched recursively)
    augment_noise_prob=0.0,  # chance of added noise at an SNR from U[augment_noise_snr] dB
    augment_noise_snr=(5.0, 20.0),  # (low, high) dB against the utterance's power
    augment_noise_dir="",  # folder of noise recordings (*.wav, e.g. MUSAN): half the noises
    # SpeechT5 speech batches (manifest / eSpeak sources only; data/pipeline.py, "SpeechT5").
    km_labels="",  # frame label file extension, e.g. 'km'; '' = no `km`
    km_dir="",  # folder of <split>.<km_labels>; default the data dir
    km_clusters=0,  # k > 0: with km_dir '', make k-means labels on first use
    log_mel=False,  # add the log-mel target `mel`
    speakers=False,  # add `speaker` ids from <split>.spk
    # SpeechT5 joint pre-training (manifest / eSpeak sources; data/pipeline.py, "SpeechT5").
    text_ratio=0.0,  # fraction of training batches that are text infilling
    text_file="",  # one sentence a line; default <data dir>/<train_split>.wrd
    sp_model="",  # SentencePiece model; default <data dir>/spm_char.model
    text_bucket_boundaries=(32, 64, 128, 256),  # token lengths of the text buckets
    max_tokens_per_batch=8192,  # text batch size rule, as max_samples_per_batch
    # SpeechT5 fine-tuning batches (config.model.task; data/tasks.py). Text tasks bucket the
    # text side by text_bucket_boundaries, one entry per bucket_boundaries entry.
    speaker_embeddings="",  # folder of <split>.xvector.npy (float32 [rows, E]); tts, vc, se
    target_sp_model="",  # st: target SentencePiece model; '' = <data dir>/spm_tgt.model
    heldout_fraction=0.0,  # train utterances held out as the split '<train_split>:heldout'
)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """`config.data` with defaults filled in and checked."""

    source: str
    corpus: dict
    manifest_dir: str
    tfds_name: str
    tfds_data_dir: str
    tfds_audio_key: str
    tfds_text_key: str
    train_split: str
    eval_split: str
    test_split: str
    labels: str
    vocab_path: str
    labelled_fraction: float
    labelled_only: bool
    unlabelled_manifests: tuple
    sample_rate: int
    normalize: bool
    crop: bool
    min_sample_len: int
    max_sample_len: int
    bucket_boundaries: tuple
    max_samples_per_batch: int
    batch_multiple: int
    max_label_len: int
    shuffle: bool
    shuffle_buffer: int
    prefetch: int
    num_parallel_calls: int
    strict: bool
    augment_speed: float
    augment_tilt_db: float
    augment_bumps_db: float
    augment_reverb_prob: float
    augment_rir_dir: str
    augment_noise_prob: float
    augment_noise_snr: tuple
    augment_noise_dir: str
    km_labels: str
    km_dir: str
    km_clusters: int
    log_mel: bool
    speakers: bool
    text_ratio: float
    text_file: str
    sp_model: str
    text_bucket_boundaries: tuple
    max_tokens_per_batch: int
    speaker_embeddings: str
    target_sp_model: str
    heldout_fraction: float


_CORPUS_KEYS = tuple(_DEFAULTS["corpus"])
_SOURCES = ("espeak", "manifest", "tfds")


def resolve(data_cfg, task: str | None = None) -> DataConfig:
    """`config.data` (ConfigDict, dict, None or a DataConfig) -> DataConfig, checked against
    the fine-tuning `task` if given (see `check_config`)."""
    if not isinstance(data_cfg, DataConfig):
        return check_config(data_cfg, task)
    if task is not None:
        _check_task(data_cfg, task)
    return data_cfg


def check_config(data_cfg, task: str | None = None) -> DataConfig:
    """Fills in the defaults of `data_cfg` (ConfigDict, dict or None), converts every value to
    its key's type and checks the ranges and combinations, also against the fine-tuning
    `task` (one of data/tasks.py's TASKS; None: speech pre-training batches); returns the
    DataConfig.

    Raises DataError naming the `data.` key and what it allows for an unknown key, a value of
    the wrong type (e.g. `bucket_boundaries=(1, 'a')`) or an inconsistent combination.
    """
    given = _as_dict(data_cfg)
    unknown = sorted(set(given) - set(_DEFAULTS))
    if unknown:
        raise DataError(f"unknown data keys {unknown}; known: {sorted(_DEFAULTS)}")
    corpus = _as_dict(given.get("corpus"))
    unknown = sorted(set(corpus) - set(_CORPUS_KEYS))
    if unknown:
        raise DataError(f"unknown data.corpus keys {unknown}; known: {sorted(_CORPUS_KEYS)}")
    values = {k: _typed(f"data.{k}", given.get(k, v), v) for k, v in _DEFAULTS.items()}
    values["corpus"] = {
        k: _typed(f"data.corpus.{k}", corpus.get(k, v), v) for k, v in _DEFAULTS["corpus"].items()
    }
    for key in ("bucket_boundaries", "text_bucket_boundaries"):
        values[key] = _boundaries(f"data.{key}", values[key])
    extra = values["unlabelled_manifests"]
    extra = (extra,) if isinstance(extra, str) else extra
    if not all(isinstance(path, str) for path in extra):
        raise DataError(f"data.unlabelled_manifests={extra!r}: expected paths of .tsv files")
    values["unlabelled_manifests"] = tuple(extra)
    cfg = DataConfig(**values)
    _check_combinations(cfg)
    if task is not None:
        _check_task(cfg, task)
    return cfg


def _as_dict(data_cfg) -> dict:
    """A ConfigDict, dict or None as a plain dict."""
    if data_cfg is None:
        return {}
    if isinstance(data_cfg, ml_collections.ConfigDict):
        return data_cfg.to_dict()
    if isinstance(data_cfg, Mapping):
        return dict(data_cfg)
    raise DataError(f"data config: expected a ConfigDict or dict, got {type(data_cfg).__name__}")


def _typed(key: str, value, default):
    """`value` converted to the type of `default`; DataError naming `key` if it is not one."""
    if key == "data.corpus.noise_snr":
        return _snrs(key, value)
    if isinstance(default, bool):
        ok = isinstance(value, (bool, numbers.Integral)) and value in (0, 1)
        kind = "True or False"
    elif isinstance(default, int):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        ok = ok and float(value).is_integer()
        kind = "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        kind = "a number"
    elif isinstance(default, str):
        ok = isinstance(value, str)
        kind = "a string"
    else:  # tuples and the corpus block: checked by their own rules
        return value
    if key == "data.corpus.languages" and isinstance(value, (list, tuple)):
        ok = all(isinstance(v, str) for v in value)
        return ",".join(value) if ok else _wrong(key, value, "comma-separated eSpeak voices")
    if not ok:
        _wrong(key, value, kind)
    return type(default)(value)


def _snrs(key: str, value) -> tuple:
    """SNRs in dB as a tuple of floats: a tuple as is, a bare number as one (0 or None: none,
    the older spelling of a clean corpus)."""
    if value is None or (not isinstance(value, (tuple, list)) and value == 0):
        return ()
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        _wrong(key, value, "a tuple of SNRs in dB, () for none")
    return tuple(float(v) for v in values)


def _wrong(key: str, value, allowed: str):
    raise DataError(f"{key}={value!r}: expected {allowed}")


def _boundaries(key: str, value) -> tuple:
    """A tuple of strictly increasing positive integers."""
    allowed = "a tuple of strictly increasing positive integers"
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or not value:
        _wrong(key, value, allowed)
    for b in value:
        ok = isinstance(b, numbers.Real) and not isinstance(b, bool)
        if not (ok and float(b).is_integer() and b > 0):
            _wrong(key, value, allowed)
    out = tuple(int(b) for b in value)
    if list(out) != sorted(set(out)):
        raise DataError(f"{key} must be strictly increasing, got {out}")
    return out


def _check_combinations(cfg: DataConfig) -> None:
    """The checks that need several keys (ranges against each other, sources against keys)."""
    b = cfg.bucket_boundaries
    if b[-1] != cfg.max_sample_len:
        raise DataError(
            f"data.bucket_boundaries[-1]={b[-1]} must equal "
            f"data.max_sample_len={cfg.max_sample_len}"
        )
    if not 0 <= cfg.min_sample_len <= cfg.max_sample_len:
        raise DataError("need 0 <= data.min_sample_len <= data.max_sample_len")
    if not 0.0 <= cfg.labelled_fraction <= 1.0:
        raise DataError("data.labelled_fraction must be in [0, 1]")
    if cfg.labelled_only and (cfg.crop or not cfg.labels or cfg.labelled_fraction == 0):
        raise DataError(
            "data.labelled_only needs data.crop=False (a crop loses its "
            "transcript), data.labels set and data.labelled_fraction > 0"
        )
    if cfg.unlabelled_manifests and (
        cfg.source == "tfds"
        or cfg.labelled_only
        or cfg.km_labels
        or cfg.speakers
        or cfg.text_ratio > 0
    ):
        raise DataError(
            "data.unlabelled_manifests needs a manifest or espeak source and "
            "excludes data.labelled_only, km_labels, speakers and text_ratio"
        )
    if cfg.source not in _SOURCES:
        raise DataError(f"unknown data.source {cfg.source!r}; known: {', '.join(_SOURCES)}")
    if cfg.source == "tfds" and (
        cfg.km_labels or cfg.log_mel or cfg.speakers or cfg.text_ratio > 0
    ):
        raise DataError(
            "data.km_labels, data.log_mel, data.speakers and data.text_ratio need a "
            "manifest or espeak source (export the TFDS split to a manifest)"
        )
    if not 0.0 <= cfg.text_ratio < 1.0:
        raise DataError(f"data.text_ratio must be in [0, 1), got {cfg.text_ratio}")
    try:
        augment_of(cfg)  # checks the ranges
    except ValueError as e:
        raise DataError(str(e)) from None
    if cfg.augment_speed > 0 and cfg.km_labels:
        raise DataError(
            "data.augment_speed changes the duration, so the 20 ms frame labels "
            "(data.km_labels) would no longer line up: use the equaliser only"
        )
    if cfg.corpus["parallel"] < 1:
        raise DataError(f"data.corpus.parallel={cfg.corpus['parallel']}: expected an integer >= 1")
    if not 0.0 <= cfg.heldout_fraction < 1.0:
        raise DataError(f"data.heldout_fraction={cfg.heldout_fraction}: expected a value in [0, 1)")
    translations = cfg.corpus["translations"]
    if cfg.source == "espeak" and translations and not os.path.isfile(translations):
        raise DataError(
            f"data.corpus.translations={translations!r}: file not found (make the Bible verse "
            "pairs with python -m unispeech_jax.data.sword; README, speech translation)"
        )


def _check_task(cfg: DataConfig, task: str) -> None:
    """The checks of a fine-tuning task's batches (data/tasks.py)."""
    if task not in tasks.TASKS:
        raise DataError(f"unknown task {task!r}; known: {', '.join(tasks.TASKS)}")
    if cfg.source == "tfds":
        raise DataError(
            f"task {task!r}: data.source='tfds' has no paired data; use a manifest or espeak source"
        )
    speech_only = {
        "km_labels": bool(cfg.km_labels),
        "km_clusters": cfg.km_clusters > 0,
        "log_mel": cfg.log_mel,
        "speakers": cfg.speakers,
        "text_ratio": cfg.text_ratio > 0,
        "unlabelled_manifests": bool(cfg.unlabelled_manifests),
        "labelled_only": cfg.labelled_only,
    }
    given = [f"data.{k}" for k, on in speech_only.items() if on]
    if given:
        raise DataError(
            f"{', '.join(given)}: speech pre-training batch options; task {task!r} makes its own "
            f"batches (docs/ARCHITECTURE.md, 'Task batches'): reset them"
        )
    if task in tasks.TEXT and len(cfg.text_bucket_boundaries) != len(cfg.bucket_boundaries):
        raise DataError(
            f"task {task!r}: data.text_bucket_boundaries={cfg.text_bucket_boundaries} needs one "
            f"entry per data.bucket_boundaries entry {cfg.bucket_boundaries} (buckets pair them)"
        )
    if task in ("tts", "se") and augment_of(cfg).active:
        raise DataError(
            f"task {task!r}: data.augment_* would change the speech its target is made of; "
            "augmentation applies to asr, st, vc and sid inputs"
        )
    if cfg.speaker_embeddings and task not in tasks.MEL:
        raise DataError(
            f"data.speaker_embeddings: task {task!r} takes no speaker embedding (tts, vc, se do)"
        )


def augment_of(cfg: DataConfig) -> augment_lib.Augment:
    """The training augmentation `cfg` asks for (data/augment.py); its folders are checked
    when the training pipeline starts (`Augment.folders`), not here: evaluating a workdir
    needs no noise folder."""
    snr = cfg.augment_noise_snr
    return augment_lib.Augment(
        speed=cfg.augment_speed,
        tilt_db=cfg.augment_tilt_db,
        bumps_db=cfg.augment_bumps_db,
        reverb_prob=cfg.augment_reverb_prob,
        rir_dir=cfg.augment_rir_dir,
        noise_prob=cfg.augment_noise_prob,
        noise_snr=tuple(snr) if isinstance(snr, (tuple, list)) else (snr,),
        noise_dir=cfg.augment_noise_dir,
    )
