"""Where a data config's files are: the data folder of its source (the eSpeak corpus cache, a
manifest folder, the TFDS folder), the label vocabulary, the SentencePiece model, and the
k-means frame labels `data.km_clusters` makes on first use."""

from __future__ import annotations

import os
from pathlib import Path

from unispeech_jax.data import kmeans
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.corpus import ensure_corpus
from unispeech_jax.data.data_config import resolve
from unispeech_jax.data.stats import DataError


def resolve_data_dir(data_cfg) -> Path:
    """The folder with the manifests (for 'espeak': builds/looks up the corpus cache)."""
    cfg = resolve(data_cfg)
    if cfg.source == "espeak":
        c = dict(cfg.corpus)
        if isinstance(c.get("languages"), str):
            c["languages"] = [s.strip() for s in c["languages"].split(",") if s.strip()]
        if not c.get("noise_snr"):
            c["noise_snr"] = None  # 0 = no noise
        return Path(ensure_corpus(**c))
    if cfg.source == "manifest":
        if not cfg.manifest_dir:
            raise DataError("data.source='manifest' needs data.manifest_dir")
        return Path(cfg.manifest_dir)
    return Path(cfg.tfds_data_dir or os.path.expanduser("~/tensorflow_datasets"))


def vocab(data_cfg) -> text_lib.PhoneVocab:
    """The label vocabulary: `vocab_path`, else <data dir>/dict.<labels>.txt."""
    cfg = resolve(data_cfg)
    if cfg.vocab_path:
        path = Path(cfg.vocab_path)
    elif cfg.labels:
        path = resolve_data_dir(cfg) / f"dict.{cfg.labels}.txt"
    else:
        raise DataError("data.labels is '' (no labels): there is no label vocabulary")
    if not path.is_file():
        raise DataError(f"label vocabulary not found: {path}")
    return text_lib.PhoneVocab.load(path)


def sentencepiece_model(data_cfg) -> Path:
    """The SentencePiece model of the text side: `data.sp_model`, else <data dir>/spm_char.model."""
    cfg = resolve(data_cfg)
    return Path(cfg.sp_model) if cfg.sp_model else resolve_data_dir(cfg) / "spm_char.model"


def ensure_km_labels(data_cfg, data_dir: str | os.PathLike) -> None:
    """With `data.km_clusters` = k and no `data.km_dir`: the MFCC k-means labels of the corpus
    in `data_dir`, made on first use (data/kmeans.py) where data/manifest.py's `km_dir` looks."""
    cfg = resolve(data_cfg)
    if cfg.km_clusters > 0 and not cfg.km_dir:
        kmeans.ensure_labels(
            data_dir, cfg.km_clusters, splits=(cfg.train_split, cfg.eval_split, cfg.test_split)
        )
