"""Where a data config's files are: the data folder of its source (the eSpeak corpus cache, a
manifest folder, the TFDS folder), the label vocabulary, the SentencePiece models (of the
transcripts, and of the translations for speech translation, made on first use), the number
of training speakers, and the k-means frame labels `data.km_clusters` makes on first use."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from unispeech_jax.data import kmeans
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.corpus import ensure_corpus, write_sentencepiece
from unispeech_jax.data.data_config import resolve
from unispeech_jax.data.manifest import read_lines, speaker_names
from unispeech_jax.data.stats import DataError


def resolve_data_dir(data_cfg) -> Path:
    """The folder with the manifests (for 'espeak': builds/looks up the corpus cache)."""
    cfg = resolve(data_cfg)
    if cfg.source == "espeak":
        c = dict(cfg.corpus)
        c["languages"] = [s.strip() for s in c["languages"].split(",") if s.strip()]
        c["translations"] = c["translations"] or None
        return Path(ensure_corpus(**c))
    if cfg.source == "manifest":
        if not cfg.manifest_dir:
            raise DataError("data.source='manifest' needs data.manifest_dir")
        return Path(cfg.manifest_dir)
    return Path(cfg.tfds_data_dir or os.path.expanduser("~/tensorflow_datasets"))


def vocab_path(data_cfg) -> Path:
    """Where the label vocabulary is: `vocab_path`, else <data dir>/dict.<labels>.txt."""
    cfg = resolve(data_cfg)
    if cfg.vocab_path:
        return Path(cfg.vocab_path)
    if cfg.labels:
        return resolve_data_dir(cfg) / f"dict.{cfg.labels}.txt"
    raise DataError("data.labels is '' (no labels): there is no label vocabulary")


def label_kind(data_cfg, kept_dir: Path) -> str:
    """The labels a run reads: `data.labels`, except for a TFDS source left at the default
    'phn' without a phone dictionary (no `data.vocab_path`, no dict.phn.txt kept in
    `kept_dir` nor in the TFDS folder): then 'ltr', the transcripts' letters, as for
    LibriSpeech and the other TFDS speech sets, which have text but no phones. A kept
    dictionary decides first, so that a workdir keeps reading what it was trained on."""
    cfg = resolve(data_cfg)
    if cfg.source != "tfds" or cfg.labels != "phn" or cfg.vocab_path:
        return cfg.labels
    for kind in ("phn", "ltr"):
        if (kept_dir / f"dict.{kind}.txt").is_file():
            return kind
    return "phn" if vocab_path(cfg).is_file() else "ltr"


def vocab(data_cfg) -> text_lib.PhoneVocab:
    """The label vocabulary (`vocab_path`)."""
    path = vocab_path(data_cfg)
    if not path.is_file():
        cfg = resolve(data_cfg)
        made = " (a training run makes it in <workdir>/vocab)" if cfg.source == "tfds" else ""
        raise DataError(f"label vocabulary not found: {path}{made}")
    return text_lib.PhoneVocab.load(path)


def sentencepiece_model(data_cfg) -> Path:
    """The SentencePiece model of the text side: `data.sp_model`, else <data dir>/spm_char.model."""
    cfg = resolve(data_cfg)
    return Path(cfg.sp_model) if cfg.sp_model else resolve_data_dir(cfg) / "spm_char.model"


def task_sentencepiece_model(data_cfg, task: str) -> Path:
    """The SentencePiece model of a fine-tuning task's `text` (what the model's text embedding
    and output layer are sized by, and what the workdir keeps): for 'st' the target-language
    model (`target_sentencepiece_model`), else `sentencepiece_model`."""
    return target_sentencepiece_model(data_cfg) if task == "st" else sentencepiece_model(data_cfg)


def target_sentencepiece_model(data_cfg) -> Path:
    """Speech translation's target-language SentencePiece model: `data.target_sp_model`, else
    <data dir>/spm_tgt.model, a character model of <train_split>.tgt made on first use (with
    the ids of the corpus's spm_char.model: </s> = 2, the same decoder start as asr)."""
    cfg = resolve(data_cfg)
    if cfg.target_sp_model:
        return Path(cfg.target_sp_model)
    data_dir = resolve_data_dir(cfg)
    model = data_dir / "spm_tgt.model"
    if model.is_file():
        return model
    source = data_dir / f"{cfg.train_split}.tgt"
    if not source.is_file():
        raise DataError(f"translation file not found: {source} (needed for spm_tgt.model)")
    lines = [raw.decode("utf-8", "replace").strip() for raw in read_lines(source)]
    lines = [line for line in lines if line]
    if not lines:
        raise DataError(f"{source}: no translations to make spm_tgt.model of")
    # Written beside and renamed into place (the .model last): never a half-written model.
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".spm_tgt-") as tmp:
        write_sentencepiece(Path(tmp) / "spm_tgt", lines)
        os.replace(Path(tmp) / "spm_tgt.vocab", data_dir / "spm_tgt.vocab")
        os.replace(Path(tmp) / "spm_tgt.model", model)
    return model


def num_speakers(data_cfg) -> int:
    """The training speakers (distinct names of <train_split>.spk): sid's classes, the rows of
    the speaker table of tts, vc and se (`model.num_speakers`)."""
    cfg = resolve(data_cfg)
    return len(speaker_names(resolve_data_dir(cfg), cfg))


def ensure_km_labels(data_cfg, data_dir: str | os.PathLike) -> None:
    """With `data.km_clusters` = k and no `data.km_dir`: the MFCC k-means labels of the corpus
    in `data_dir`, made on first use (data/kmeans.py) where data/manifest.py's `km_dir` looks."""
    cfg = resolve(data_cfg)
    if cfg.km_clusters > 0 and not cfg.km_dir:
        kmeans.ensure_labels(
            data_dir, cfg.km_clusters, splits=(cfg.train_split, cfg.eval_split, cfg.test_split)
        )
