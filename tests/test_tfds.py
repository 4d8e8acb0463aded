"""LibriSpeech through TFDS as the README documents it, on a tiny locally prepared stand-in
(tests/tfds_librispeech.py): letter targets made on first use and kept in the workdir, read
back by a resumed run and by evaluate."""

import contextlib
import logging
import tempfile
import threading
from pathlib import Path

import broken_corpus
import numpy as np
import pytest
from micro import micro_config
from tfds_librispeech import prepare, write

from unispeech_jax import evaluate, inference, train
from unispeech_jax.data import sources, tfds_source
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.data_config import resolve
from unispeech_jax.data.stats import DataError, PipelineStats

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
    scorable = [t for t in lines if set(text_lib.letters(t).split()) <= known]
    assert 0 < scored["examples"] == len(scorable) and scored["per"] > 0 and scored["wer"] > 0
    # transcribe prints the words the letters spell.
    trained = inference.load(work, task="asr")
    spelled = trained.phones.encode(text_lib.letters("hi  you"))
    assert inference.to_text(trained, spelled) == "HI YOU"


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


class Exchange:
    """The all-gather of `n` simulated hosts, each running in a thread of its own."""

    def __init__(self, n):
        self.barrier, self.slots = threading.Barrier(n), [None] * n

    def of(self, host):
        def agree(mine):
            self.slots[host] = mine
            self.barrier.wait()
            out = np.stack(self.slots)
            self.barrier.wait()
            return out

        return agree


def hosts_take(cfg, n_batches, start=(0, 0), hosts=2):
    """The first `n_batches` batches and the positions after them of each of `hosts` hosts."""
    exchange = Exchange(hosts)
    out = [None] * hosts

    def run(h):
        it = tfds_source.tfds_iterator(
            resolve(cfg),
            "train_clean100",
            train=True,
            seed=0,
            process_index=h,
            process_count=hosts,
            start=start,
            stats=PipelineStats(),
            agree=exchange.of(h),
        )
        with contextlib.closing(it):
            batches = [next(it) for _ in range(n_batches)]
            out[h] = batches, it.position

    threads = [threading.Thread(target=run, args=(h,)) for h in range(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(o is not None for o in out), "a host stopped"
    return out


def test_hosts_read_disjoint_shares_and_agree_on_every_batch_shape(tmp_path):
    """Two hosts: each reads only its half of the split, the batches of a step have one
    shape, and resuming from a position repeats the batches that followed it."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(8000, 32001, 40)
    examples = [
        (
            str(u),
            dict(
                speech=broken_corpus.signal(u, n), text="A", speaker_id=0, chapter_id=0, id=str(u)
            ),
        )
        for u, n in enumerate(lengths)
    ]
    data_dir = write(tmp_path, {"train_clean100": examples})
    cfg = dict(
        source="tfds",
        tfds_name="librispeech",
        tfds_data_dir=str(data_dir),
        labels="",
        max_sample_len=32000,
        bucket_boundaries=(16000, 32000),
        max_samples_per_batch=64000,
        batch_multiple=2,
        shuffle_buffer=8,
    )
    (h0, _), (h1, _) = hosts_take(cfg, 30)  # 30 batches: well into the second epoch
    rows = [[broken_corpus.utterance_of(r) for b in h for r in b["audio"]] for h in (h0, h1)]
    for a, b in zip(h0, h1):
        assert a["audio"].shape == b["audio"].shape
    builder = tfds_source.builder_of(resolve(cfg))
    first_half = builder.as_dataset(split="train_clean100[:20]").as_numpy_iterator()
    share = {int(ex["id"]) for ex in first_half}  # TFDS stores examples in its own order
    assert set(rows[0]) <= share and not set(rows[1]) & share
    first_epoch = [len(set(r[: len(r) // 3])) == len(r[: len(r) // 3]) for r in rows]
    assert all(first_epoch)

    (r0, position), (r1, _) = hosts_take(cfg, 7)
    (c0, _), (c1, _) = hosts_take(cfg, 23, start=(position["epoch"], position["batch"]))
    for x, y in zip(h0[7:] + h1[7:], c0 + c1):
        np.testing.assert_array_equal(x["audio"], y["audio"])


def test_the_default_exchange_is_jax_all_gather():
    """One process: its own row (launch/local_multiprocess.sh runs the real two-host case)."""
    mine = np.array([1, 0, 1], np.int32)
    np.testing.assert_array_equal(tfds_source._allgather(mine), [[1, 0, 1]])


def test_a_builder_of_unprepared_data_leaves_no_temporary_folder(tmp_path, monkeypatch):
    """TFDS makes an empty mkdtemp('tfds') for every builder of a dataset not prepared in its
    data_dir and keeps it; builder_of removes it (the tests had left hundreds in /tmp)."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    cfg = dict(source="tfds", tfds_name="librispeech", tfds_data_dir=str(tmp_path / "none"))
    assert not tfds_source.builder_of(resolve(cfg)).is_prepared()
    assert not list(temp.iterdir())
    assert tempfile.gettempdir() == str(temp)
