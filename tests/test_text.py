"""Phone vocabulary and SentencePiece helpers."""

import pytest

from unispeech_jax.data import text


def _write_dict(tmp_path, lines):
    path = tmp_path / "dict.phn.txt"
    path.write_text("".join(l + "\n" for l in lines), encoding="utf-8")
    return path


def test_phone_vocab_ids_follow_file_order(tmp_path):
    vocab = text.PhoneVocab.load(_write_dict(tmp_path, ["ə 120", "| 100", "h 40", "", "oʊ 3"]))
    assert vocab.symbols == ["<blank>", "<unk>", "ə", "|", "h", "oʊ"]
    assert len(vocab) == 6
    assert (vocab.blank_id, vocab.unk_id) == (0, 1)
    assert vocab.encode("h ə |  oʊ |") == [4, 2, 3, 5, 3]
    assert vocab.decode([4, 0, 2, 3, 0]) == "h ə |"
    assert "oʊ" in vocab and "x" not in vocab


def test_phone_vocab_unknown_policy(tmp_path):
    vocab = text.PhoneVocab.load(_write_dict(tmp_path, ["a 1", "b 1"]))
    with pytest.raises(text.UnknownPhoneError) as err:
        vocab.encode("a q b")
    assert err.value.phone == "q"
    assert vocab.encode("a q b", unknown="unk") == [2, 1, 3]


def test_phone_vocab_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        text.PhoneVocab.load(_write_dict(tmp_path, ["a 1", "a 2"]))
    with pytest.raises(ValueError, match=":2:"):
        text.PhoneVocab.load(_write_dict(tmp_path, ["a 1", "b c d e"]))


def test_phone_vocab_roundtrip_and_reserved(tmp_path):
    vocab = text.PhoneVocab(["<unk>", "x", "y"])   # a reserved name in the list is skipped
    assert vocab.symbols == ["<blank>", "<unk>", "x", "y"]
    vocab.save(tmp_path / "d.txt")
    assert text.PhoneVocab.load(tmp_path / "d.txt").symbols == vocab.symbols


def test_char_sentencepiece_roundtrip(tmp_path):
    model = text.train_char_model(["hello world", "the quick brown fox"], tmp_path / "spm")
    sp = text.load_sp(model)
    assert [sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()] == [0, 1, 2, 3]
    ids = text.sp_encode(sp, "hello fox", add_eos=True)
    assert ids[-1] == 3 and 0 not in ids
    assert text.sp_decode(sp, ids + [0, 0]) == "hello fox"
    assert text.sp_encode(sp, "z")[-1] == sp.unk_id()
    with pytest.raises(FileNotFoundError):
        text.load_sp(tmp_path / "missing.model")
