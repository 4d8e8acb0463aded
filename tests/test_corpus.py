"""The eSpeak NG corpus generator: layout, labels, audio, determinism, held-out voices, cache."""

import filecmp
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import sentencepiece as spm
import soundfile as sf

from unispeech_jax.data import corpus, espeak, sentences

SPLITS = ("train", "valid", "test")


def read_lines(path):
    return pathlib.Path(path).read_text(encoding="utf-8").splitlines()


def all_files(root):
    return sorted(p.relative_to(root) for p in pathlib.Path(root).rglob("*") if p.is_file())


def assert_same_tree(a, b):
    assert all_files(a) == all_files(b)
    for rel in all_files(a):
        assert filecmp.cmp(a / rel, b / rel, shallow=False), f"{rel} differs"


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same arguments twice into the same path (moved away in between), 2 then 1 worker."""
    base = tmp_path_factory.mktemp("pair")
    out = base / "c"
    args = dict(hours=0.01, languages=("en-us", "es"), seed=5, quiet=True)
    corpus.generate(out, workers=2, **args)
    out.rename(base / "first")
    corpus.generate(out, workers=1, **args)
    return base / "first", out


# ------------------------------------------------------------------ layout and labels
def test_layout_labels_and_audio(tiny_corpus):
    root = tiny_corpus
    info = json.loads((root / "corpus.json").read_text())
    for split in SPLITS:
        tsv = read_lines(root / f"{split}.tsv")
        assert tsv[0] == str(root)
        rows = [line.split("\t") for line in tsv[1:]]
        labels = {ext: read_lines(root / f"{split}.{ext}") for ext in ("phn", "wrd", "spk", "lang")}
        assert all(len(v) == len(rows) for v in labels.values()), split
        assert len(rows) == info["splits"][split]["utterances"]
        assert len(rows) >= (
            corpus.MIN_TRAIN_UTTERANCES if split == "train" else corpus.MIN_EVAL_UTTERANCES
        )
        voices = set(info["voices"][split])
        for (rel, n), phn, wrd, spk in zip(rows, labels["phn"], labels["wrd"], labels["spk"]):
            audio, rate = sf.read(root / rel, dtype="int16")
            assert rate == 16000 and audio.ndim == 1 and audio.size == int(n)
            assert 0.5 < audio.size / rate < 12 and np.abs(audio).max() > 1000
            assert phn.split().count("|") == len(wrd.split()) > 0
            assert phn.endswith(" |") and "ˈ" not in phn and "ˌ" not in phn and "(" not in phn
            assert all(p != "|" for p in phn.replace("|", "").split())  # no empty words
            assert wrd == wrd.lower() and not any(c.isdigit() for c in wrd)
            assert spk.rsplit("-", 1)[0] in voices
        assert set(labels["lang"]) == {"en-us"}
    assert not (root / "train.clean").exists()


def test_held_out_voices_and_sentences(tiny_corpus):
    info = json.loads((tiny_corpus / "corpus.json").read_text())
    train, valid, test = (set(info["voices"][s]) for s in SPLITS)
    assert train and valid and test
    assert not train & test and not train & valid and not valid & test
    words = {s: set(read_lines(tiny_corpus / f"{s}.wrd")) for s in SPLITS}
    assert not words["test"] & words["train"] and not words["valid"] & words["train"]


def test_vocabularies_and_sentencepiece(tiny_corpus):
    root = tiny_corpus
    rows = [line.split(" ") for line in read_lines(root / "dict.phn.txt")]
    counts = [(-int(c), p) for p, c in rows]
    assert counts == sorted(counts) and len(rows) > 20  # most frequent first, ties by symbol
    phones = {p for p, _ in rows}
    assert "|" in phones and {"tʃ", "aɪ", "oʊ"} & phones  # multi-character phones kept whole
    assert read_lines(root / "dict.phn.en-us.txt") == read_lines(root / "dict.phn.txt")
    used = {p for s in SPLITS for line in read_lines(root / f"{s}.phn") for p in line.split()}
    assert used == phones
    sp = spm.SentencePieceProcessor(model_file=str(root / "spm_char.model"))
    for line in read_lines(root / "train.wrd")[:20]:
        assert sp.unk_id() not in sp.encode(line)
        assert sp.decode(sp.encode(line)) == line


# ------------------------------------------------------------------ determinism
def test_same_arguments_give_identical_bytes(pair):
    first, second = pair
    assert_same_tree(first, second)
    assert set(read_lines(first / "train.lang")) | set(read_lines(first / "test.lang")) == {
        "en-us",
        "es",
    }


def test_other_seed_gives_other_corpus(pair, tmp_path):
    first, _ = pair
    corpus.generate(tmp_path / "c", hours=0.01, languages=("en-us", "es"), seed=6, quiet=True)
    assert read_lines(first / "train.wrd") != read_lines(tmp_path / "c/train.wrd")
    assert (first / "spm_char.model").read_bytes() != (tmp_path / "c/spm_char.model").read_bytes()


# ------------------------------------------------------------------ options
def test_noise_and_reverb_write_clean_counterparts(tmp_path):
    out = tmp_path / "noisy"
    corpus.generate(out, hours=0.005, noise_snr=5.0, reverb=True, seed=1, quiet=True)
    for split in SPLITS:
        rows = [line.split("\t") for line in read_lines(out / f"{split}.tsv")[1:]]
        clean = read_lines(out / f"{split}.clean")
        assert len(clean) == len(rows) == len(read_lines(out / f"{split}.phn"))
        for (rel, n), clean_rel in list(zip(rows, clean))[:5]:
            noisy, _ = sf.read(out / rel)
            dry, _ = sf.read(out / clean_rel)
            assert rel.startswith("noisy/") and clean_rel.startswith("audio/")
            assert noisy.size == dry.size == int(n)
            snr = 10 * np.log10(np.sum(dry**2) / np.sum((noisy - dry) ** 2))
            assert -5 < snr < 15  # noise at 5 dB plus the reverberation's change


def test_text_file(tmp_path):
    text = tmp_path / "sentences.txt"
    text.write_text(
        "The cat sat on the mat of the house.\n"
        "I paid 5 dollars for it.\n"  # digits: dropped
        "Well-known authors don't always write good books!\n"
        "es\tEl perro come en la casa de mi madre.\n"
        "It is one of the best things in the world.\n"
        "He went to the store and bought some bread.\n",
        encoding="utf-8",
    )
    out = tmp_path / "c"
    corpus.generate(out, hours=0.002, languages=("en-us", "es"), text_file=text, quiet=True)
    wrd = {s: set(read_lines(out / f"{s}.wrd")) for s in SPLITS}
    assert "the cat sat on the mat of the house" in set().union(*wrd.values())
    assert not any("dollars" in w for s in SPLITS for w in wrd[s])
    assert not wrd["train"] & wrd["test"] and not wrd["train"] & wrd["valid"]
    for split in SPLITS:
        for phn, w in zip(read_lines(out / f"{split}.phn"), read_lines(out / f"{split}.wrd")):
            assert phn.split().count("|") == len(w.split())


def test_translations_speak_the_source_and_keep_the_target(tmp_path):
    pairs = {
        "In the beginning God created the heavens and the earth.": "EN el principio crió Dios "
        "los cielos y la tierra.",
        "Jesus wept.": "Y lloró Jesús.",
        "Rejoice always.": "Estad siempre gozosos.",
        "Pray without ceasing.": "Orad   sin cesar.",
        "In everything give thanks.": "Dad gracias en todo.",
        "He paid 5 shekels.": "Pagó cinco siclos.",  # digits in the source: dropped
        "No translation here.": "",  # dropped
    }
    text = tmp_path / "bible.tsv"
    text.write_text("".join(f"{a}\t{b}\n" for a, b in pairs.items()), encoding="utf-8")
    out = tmp_path / "c"
    corpus.generate(out, hours=0.002, translations=text, quiet=True)
    expected = {
        sentences.normalise_text(a): " ".join(b.split())
        for a, b in pairs.items()
        if b and "5" not in a
    }
    for split in SPLITS:
        wrd, tgt = read_lines(out / f"{split}.wrd"), read_lines(out / f"{split}.tgt")
        assert len(wrd) == len(tgt) == len(read_lines(out / f"{split}.tsv")) - 1
        assert all(expected[w] == t for w, t in zip(wrd, tgt))
    info = json.loads((out / "corpus.json").read_text())
    assert info["arguments"]["translations"]["name"] == "bible.tsv"
    with pytest.raises(ValueError, match="one language"):
        corpus.generate(tmp_path / "d", hours=0.002, languages=("en-us", "es"), translations=text)


def test_task_options_leave_the_default_corpus_alone():
    """Cache keys of corpora made before --parallel / --translations / SNR lists existed."""
    assert corpus.corpus_key(1.0, ["en-us"]) == "70f9826cf5476265"
    assert corpus.corpus_key(0.02, ["en-us"], [5], True, 3) == "ce0f17df42daa668"
    assert corpus.corpus_key(1.0, ["en-us"], parallel=2) != "70f9826cf5476265"
    with pytest.raises(ValueError, match=r"parallel must be in \[1, 10\]"):
        corpus.generate("/nonexistent", hours=0.01, parallel=11)


def test_unknown_language_is_named(tmp_path):
    with pytest.raises(ValueError, match="xx-nope"):
        corpus.generate(tmp_path / "c", hours=0.01, languages=("en-us", "xx-nope"))
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "unispeech_jax.data.corpus",
            "--out",
            str(tmp_path / "d"),
            "--languages",
            "klingon",
        ],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and "klingon" in cli.stderr


# ------------------------------------------------------------------ text and phones
def test_normalise_text():
    assert (
        sentences.normalise_text("Hello, World!  It's well-known.") == "hello world it's well known"
    )
    assert sentences.normalise_text("I have 3 cats") is None
    assert sentences.normalise_text("50% off") is None
    assert sentences.normalise_text("...") is None


def test_ipa_words_and_alignment():
    raw = "h_ə_l_ˈoʊ_ w_ˈɜː_l_d (en)_ð_ə_(de) ʌ_v_ð_ə"
    assert espeak.ipa_words(raw) == [
        ["h", "ə", "l", "oʊ"],
        ["w", "ɜː", "l", "d"],
        ["ð", "ə"],
        ["ʌ", "v", "ð", "ə"],
    ]
    alone = {"of": ["ʌ", "v"], "the": ["ð", "iː"], "cat": ["k", "æ", "t"]}
    tokens = [["ʌ", "v", "ð", "ə"], ["k", "æ", "t"]]
    got = espeak.align_to_words(tokens, ["of", "the", "cat"], alone.get)
    assert got == [["ʌ", "v"], ["ð", "ə"], ["k", "æ", "t"]]


# ------------------------------------------------------------------ cache
def test_ensure_corpus_caches_and_ignores_partial_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("UNISPEECH_JAX_CACHE", str(tmp_path))
    key = corpus.corpus_key(0.005, ["en-us"], seed=2)
    partial = tmp_path / "corpus" / key
    partial.mkdir(parents=True)
    (partial / "train.tsv").write_text("half written\n")
    stray_tmp = tmp_path / "corpus" / f".tmp-{key}-crashed"
    stray_tmp.mkdir()

    path = corpus.ensure_corpus(hours=0.005, seed=2)
    assert path == partial and (path / "corpus.json").is_file()
    assert read_lines(path / "train.tsv")[0] == str(path)
    before = all_files(path)

    def must_not_run(*args, **kwargs):
        raise AssertionError("regenerated a cached corpus")

    monkeypatch.setattr(corpus, "generate", must_not_run)
    assert corpus.ensure_corpus(hours=0.005, seed=2, workers=1) == path
    assert all_files(path) == before
    leftovers = [p.name for p in (tmp_path / "corpus").iterdir()]
    assert sorted(leftovers) == sorted([key, stray_tmp.name])
