"""LibriSpeech through TFDS as the README documents it, on a tiny locally prepared stand-in
(tests/tfds_librispeech.py): letter targets made on first use and kept in the workdir, read
back by a resumed run and by evaluate."""

import logging
from pathlib import Path

import pytest
from micro import micro_config
from tfds_librispeech import prepare

from unispeech_jax import evaluate, train
from unispeech_jax.data import sources, tfds_source
from unispeech_jax.data.stats import DataError

# The README's command: the dataset's name and its splits, nothing about labels.
LIBRISPEECH = {
    "data.source": "tfds",
    "data.tfds_name": "librispeech",
    "data.train_split": "train_clean100",
    "data.eval_split": "dev_clean",
    "data.test_split": "test_clean",
}


@pytest.fixture(scope="module")
def librispeech(tiny_corpus, tmp_path_factory):
    """The data dir of the stand-in, made from the session's tiny eSpeak corpus."""
    return prepare(Path(tiny_corpus), tmp_path_factory.mktemp("tfds"))


def librispeech_config(data_dir, **overrides):
    return micro_config(**LIBRISPEECH, **{"data.tfds_data_dir": str(data_dir)}, **overrides)


def test_letters_are_made_once_kept_and_read_back(librispeech, tmp_path, monkeypatch, caplog):
    work = tmp_path / "w"
    config = librispeech_config(librispeech, total_steps=4, eval_every=2)
    with caplog.at_level(logging.INFO, "unispeech_jax"):
        first = train.train(config, work, stop_at=2)
    assert first["step"] == 2 and first["eval"]["examples"] > 0
    assert "librispeech has no phone dictionary: reading letters" in caplog.text
    closing = caplog.records[-1].getMessage()  # the run's last line: what is where
    assert closing.startswith("stopped as asked (--stop_at) at step 2 of 4"), closing
    assert f"checkpoint step 2 in {work}/checkpoints" in closing
    assert "the same command resumes; last eval (dev_clean, step 2): per=" in closing
    kept = work / "vocab" / "dict.ltr.txt"
    rows = [line.split() for line in kept.read_text(encoding="utf-8").splitlines()]
    symbols, counts = [s for s, _ in rows], [int(n) for _, n in rows]
    assert "|" in symbols and "E" in symbols and counts == sorted(counts, reverse=True)
    assert all(len(s) == 1 and not s.islower() for s in symbols)

    # Resuming, and evaluating, read the kept letters: nothing lists them again.
    def listed_again(*args):
        raise AssertionError("the letter vocabulary was made again")

    monkeypatch.setattr(tfds_source, "write_letter_vocab", listed_again)
    with caplog.at_level(logging.INFO, "unispeech_jax"):
        second = train.train(config, work)
    assert second["step"] == 4
    assert caplog.records[-1].getMessage().startswith("finished at step 4 of 4")
    scored = evaluate.evaluate_workdir(work, "test_clean")
    # Every test utterance whose letters the training transcripts have (the others are
    # skipped as unknown, like a phone the dictionary lacks).
    corpus = Path(sources.resolve_data_dir(micro_config().data))
    known = set(symbols)
    lines = (corpus / "test.wrd").read_text(encoding="utf-8").splitlines()
    scorable = [t for t in lines if set(tfds_source.letters(t).split()) <= known]
    assert 0 < scored["examples"] == len(scorable) and scored["per"] > 0


def test_phones_when_the_dataset_has_a_phone_dictionary(librispeech, tmp_path):
    """A dict.phn.txt beside the TFDS data (or data.vocab_path) keeps the phone reading; a
    workdir reads what it keeps, whatever is added beside the data later."""
    config = librispeech_config(librispeech)
    kept = tmp_path / "vocab"
    assert sources.label_kind(config.data, kept) == "ltr"
    (kept).mkdir()
    (kept / "dict.ltr.txt").write_text("A 1\n")
    phones = librispeech_config(tmp_path)
    (tmp_path / "dict.phn.txt").write_text("a 1\n")
    assert sources.label_kind(phones.data, tmp_path / "none") == "phn"
    assert sources.label_kind(phones.data, kept) == "ltr"
    with pytest.raises(DataError, match=r"dict.ltr.txt \(a training run makes it"):
        sources.vocab(librispeech_config(librispeech, **{"data.labels": "ltr"}).data)
