"""Phone vocabulary and SentencePiece helpers."""

import numpy as np
import pytest

from unispeech_jax.data import text


def _write_dict(tmp_path, lines):
    path = tmp_path / "dict.phn.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
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
    vocab = text.PhoneVocab(["<unk>", "x", "y"])  # a reserved name in the list is skipped
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


# ----------------------------------------------------------------------------- text infilling


def test_infill_spans_statistics():
    rng = np.random.default_rng(0)
    n, covered, lengths = 1000, [], []
    for _ in range(200):
        starts, lens = text.infill_spans(rng, n)
        ends = starts + lens
        assert (starts[1:] >= ends[:-1]).all() and starts[0] >= 0 and ends[-1] <= n
        covered.append(lens.sum())
        lengths.append(lens)
    assert set(covered) == {300}  # exactly ceil(30 %) of the tokens
    lengths = np.concatenate(lengths)
    # Poisson(3.5): mean 3.5, variance 3.5, P(0) = e^-3.5 (the cut last draw barely matters).
    assert abs(lengths.mean() - 3.5) < 0.05
    assert abs(lengths.var() - 3.5) < 0.2
    assert abs((lengths == 0).mean() - np.exp(-3.5)) < 0.01
    # Placement is uniform: every position is masked about 30 % of the time.
    hits = np.zeros(n)
    for _ in range(300):
        starts, lens = text.infill_spans(rng, n)
        for s, span in zip(starts, lens):
            hits[s : s + span] += 1
    assert abs(hits[:100].mean() / 300 - 0.3) < 0.05
    assert abs(hits[-100:].mean() / 300 - 0.3) < 0.05


def test_infill_spans_short_inputs_never_grow():
    rng = np.random.default_rng(1)
    for n in range(12):
        for _ in range(50):
            _, lens = text.infill_spans(rng, n)
            assert lens.sum() == (np.ceil(n * 0.3) if n else 0)
            assert n - lens.sum() + len(lens) <= n


def _reconstruct(source, target, mask_id):
    """(deleted tokens, spans, random spans) of a noised text whose tokens are all < 1000:
    every id >= 1000 is the one replacement token of a span."""
    kept = source[source < 1000]
    spans = (source >= 1000).sum()
    return (
        len(target) - len(kept),
        spans,
        ((source >= 1000) & (source != mask_id)).sum(),
    )


def test_infill_noise_one_token_per_span_and_random_ratio():
    rng = np.random.default_rng(2)
    mask_id, vocab = 5000, 5001
    random_ids = np.arange(1000, 5000)  # disjoint from the tokens: traceable
    deleted = spans = randoms = total = 0
    for _ in range(300):
        tokens = np.append(np.arange(4, 204), 3)  # 200 distinct tokens + </s> (id 3)
        source, target = text.infill_noise(
            rng, tokens, mask_id, vocab, eos_id=3, random_ids=random_ids
        )
        np.testing.assert_array_equal(target, tokens)
        assert source[-1] == 3 and len(source) <= len(tokens)
        kept = source[source < 1000][:-1]
        assert (np.diff(kept) > 0).all()  # unmasked tokens keep their order
        d, s, r = _reconstruct(source, target, mask_id)
        deleted, spans, randoms, total = (
            deleted + d,
            spans + s,
            randoms + r,
            total + 200,
        )
    assert deleted / total == 0.3  # the budget, </s> excluded
    assert abs(deleted / spans - 3.5) < 0.15  # mean span length
    assert abs(randoms / spans - 0.1) < 0.02


def test_infill_noise_defaults_and_sentencepiece_ids(tmp_path):
    sp = text.load_sp(text.train_char_model(["hello world", "ab cd"], tmp_path / "spm"))
    mask = text.mask_token_id(sp)
    assert mask == sp.get_piece_size() and text.text_vocab_size(sp) == mask + 1
    assert text.pad_token_id(sp) == sp.pad_id() == 0  # train_char_model reserves <pad>
    ordinary = text.ordinary_ids(sp)
    assert not {0, 1, 2, 3, mask} & set(ordinary)
    ids = np.asarray(text.sp_encode(sp, "hello world hello world", add_eos=True))
    rng = np.random.default_rng(3)
    for _ in range(20):
        source, _ = text.infill_noise(
            rng,
            ids,
            mask,
            text.text_vocab_size(sp),
            eos_id=sp.eos_id(),
            random_ids=ordinary,
        )
        assert source.dtype == np.int32 and mask in source
        assert set(source.tolist()) <= set(ordinary) | {mask, sp.eos_id()}
    # Same generator state, same noise; no eos_id: the last token may be masked too.
    a = text.infill_noise(np.random.default_rng(7), ids, mask, mask + 1)
    b = text.infill_noise(np.random.default_rng(7), ids, mask, mask + 1)
    np.testing.assert_array_equal(a[0], b[0])
    assert text.infill_noise(rng, [], mask, mask + 1)[0].shape == (0,)


def test_a_model_without_pad_gets_mask_then_pad_past_its_vocabulary(tmp_path):
    """The corpus's spm_char.model kind (0 <unk>, 1 <s>, 2 </s>, no pad): padding must not be 0."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["hello world", "ab cd"]),
        model_prefix=str(tmp_path / "nopad"),
        model_type="char",
        vocab_size=14,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = text.load_sp(tmp_path / "nopad.model")
    size = sp.get_piece_size()
    assert sp.pad_id() == -1 and sp.unk_id() == 0
    assert text.mask_token_id(sp) == size and text.pad_token_id(sp) == size + 1
    assert text.text_vocab_size(sp) == size + 2
    ids = text.sp_encode(sp, "hello", add_eos=True)
    assert text.sp_decode(sp, ids + [text.pad_token_id(sp)] * 3) == "hello"
