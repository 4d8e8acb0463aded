"""A tiny local stand-in for the prepared TFDS `librispeech` dataset, for the TFDS tests.

`prepare(corpus, data_dir)` writes the utterances and word transcripts of an eSpeak corpus
(its train / valid / test manifests and .wrd files) as LibriSpeech's train_clean100 /
dev_clean / test_clean splits, in the layout and with the features of the registered
builder: `tfds.builder('librispeech', data_dir=data_dir)` then reads them as it would read
the real download (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
import tensorflow_datasets as tfds

from unispeech_jax.data import tfds_source

SPLITS = {"train_clean100": "train", "dev_clean": "valid", "test_clean": "test"}


def _examples(corpus: Path, split: str):
    lines = (corpus / f"{split}.tsv").read_text().splitlines()
    root = Path(lines[0])
    words = (corpus / f"{split}.wrd").read_text(encoding="utf-8").splitlines()
    for u, (row, text) in enumerate(zip(lines[1:], words)):
        audio, _ = sf.read(root / row.split("\t")[0], dtype="int16")
        yield (
            f"{split}-{u}",
            {
                "speech": audio,
                "text": text.upper(),
                "speaker_id": 0,
                "chapter_id": 0,
                "id": f"{split}-{u}",
            },
        )


def prepare(corpus: Path, data_dir: Path) -> Path:
    """Writes the stand-in under `data_dir`; returns `data_dir`."""
    return write(data_dir, {name: _examples(Path(corpus), s) for name, s in SPLITS.items()})


def write(data_dir: Path, splits: dict) -> Path:
    """Writes `splits` ({split name: iterable of (key, example)}) as a prepared `librispeech`
    under `data_dir`; returns `data_dir`."""
    with tfds_source.tempfiles_removed():
        registered = tfds.builder("librispeech")

    class Librispeech(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "librispeech"
        VERSION = registered.version
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="default")]

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=registered.info.features)

        def _split_generators(self, dl_manager):
            return {name: self._generate_examples(name) for name in splits}

        def _generate_examples(self, name):
            return splits[name]

    with tfds_source.tempfiles_removed():
        builder = Librispeech(data_dir=str(data_dir))
    builder.download_and_prepare()
    return data_dir
