"""Input pipeline: manifests, bad input, bucketing, sharding, determinism, resume, tfds, mixing.

The corpus is synthetic (tests/broken_corpus.py): every sample tells which utterance it came
from, so rows can be traced back without extra batch keys.
"""

import json
import shutil

import broken_corpus as bc
import numpy as np
import pytest

from unispeech_jax import config as config_lib
from unispeech_jax.data import (
    batching,
    data_config,
    manifest,
    mixing,
    sources,
    text_batches,
)
from unispeech_jax.data import features as F
from unispeech_jax.data import pipeline as P
from unispeech_jax.data import text as text_lib
from unispeech_jax.data.stats import PipelineStats

SMALL = dict(
    source="manifest",
    min_sample_len=1000,
    max_sample_len=8000,
    bucket_boundaries=(2000, 4000, 8000),
    max_samples_per_batch=16000,
    batch_multiple=2,
    max_label_len=32,
    prefetch=2,
    num_parallel_calls=2,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return bc.write_corpus(tmp_path_factory.mktemp("corpus"), n_train=48, n_valid=13)


@pytest.fixture
def fresh(tmp_path):
    """A small corpus the test may break."""
    return bc.write_corpus(tmp_path / "c", n_train=10, n_valid=6, min_len=1000, max_len=7000)


def cfg_for(root, **over):
    return {**SMALL, "manifest_dir": str(root), **over}


def take(it, n):
    return [next(it) for _ in range(n)]


def rows_of(batch):
    """Utterance ids of the weight-1 rows of a batch."""
    return [bc.utterance_of(r) for r, w in zip(batch["audio"], batch["weight"]) if w > 0]


def epoch_batches(cfg, seed=0, **kw):
    """The batches of epoch 0 of a train iterator (by its position)."""
    it = P.make_train_iter(cfg, seed=seed, **kw)
    out = []
    while True:
        b = next(it)
        if it.position["epoch"] != 0:
            return out
        out.append(b)
        if it.position["batch"] == len(out) and len(out) > 500:
            raise AssertionError("epoch never ends")


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ----------------------------------------------------------------------------- manifests


def test_batch_size_rule():
    cfg = dict(
        max_samples_per_batch=384000,
        batch_multiple=8,
        max_sample_len=96000,
        bucket_boundaries=(32000, 48000, 64000, 96000),
    )
    assert [batching.batch_size_for(cfg, b) for b in (32000, 48000, 64000, 96000)] == [8, 8, 8, 8]
    cfg.update(max_samples_per_batch=1_600_000)
    assert [batching.batch_size_for(cfg, b) for b in (32000, 48000, 64000, 96000)] == [
        48,
        32,
        24,
        16,
    ]


def test_manifest_root_relative_paths_and_counts(corpus, tmp_path):
    cfg = data_config.resolve(
        cfg_for(corpus, crop=False, max_sample_len=12000, bucket_boundaries=(12000,))
    )
    vocab = sources.vocab(cfg)
    split = manifest.load_split(corpus, "train", cfg, vocabulary=vocab, with_labels=True)
    assert len(split) == 48
    assert split.lines.tolist() == list(range(2, 50))
    assert split.paths[3] == str(corpus / "wav/train/0003.flac")
    phn = (corpus / "train.phn").read_text().split("\n")
    assert vocab.decode(split.labels_of(5)) == phn[5]
    # An absolute root, a manifest elsewhere: same files.
    other = tmp_path / "m"
    other.mkdir()
    lines = (corpus / "train.tsv").read_text().split("\n")
    (other / "train.tsv").write_text("\n".join([str(corpus)] + lines[1:]))
    shutil.copy(corpus / "train.phn", other / "train.phn")
    moved = manifest.load_split(other, "train", cfg, vocabulary=vocab, with_labels=True)
    assert moved.paths == split.paths and (moved.lengths == split.lengths).all()
    with pytest.raises(P.DataError, match="manifest not found"):
        manifest.load_split(corpus, "nope", cfg, vocabulary=vocab, with_labels=True)
    with pytest.raises(P.DataError, match="label file not found"):
        manifest.load_split(
            other, "train", dict(cfg_for(other), labels="ltr"), vocabulary=vocab, with_labels=True
        )


def test_bucket_lengths_and_letters():
    lengths = np.array([1, 2000, 2001, 8000, 8001, 16000, 16001])
    expected = [2000, 2000, 4000, 8000, 16000, 16000, 24000]
    assert batching.bucket_lengths((2000, 4000, 8000), lengths).tolist() == expected
    assert [batching.eval_bucket_len((2000, 4000, 8000), n) for n in lengths] == expected
    assert text_lib.letters("hi  you") == "H I | Y O U |"
    assert text_lib.letter_words("H I | Y O U |") == "HI YOU"


def test_config_checks():
    with pytest.raises(ValueError, match="max_sample_len"):
        data_config.resolve(dict(max_sample_len=5000, bucket_boundaries=(2000, 4000)))
    with pytest.raises(ValueError, match="increasing"):
        data_config.resolve(dict(max_sample_len=4000, bucket_boundaries=(4000, 2000, 4000)))
    assert set(data_config.default_config().to_dict()) == set(data_config._DEFAULTS)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("bucket_boundaries", (1, "a"), r"data.bucket_boundaries=\(1, 'a'\): expected a tuple of "),
        ("bucket_boundaries", "96000", "strictly increasing positive integers"),
        ("bucket_boundaries", (0, 96000), "strictly increasing positive integers"),
        ("text_bucket_boundaries", (), r"data.text_bucket_boundaries=\(\): expected a tuple"),
        ("max_sample_len", "big", "data.max_sample_len='big': expected an integer"),
        ("batch_multiple", 2.5, "data.batch_multiple=2.5: expected an integer"),
        ("crop", 2, "data.crop=2: expected True or False"),
        ("labelled_fraction", "all", "data.labelled_fraction='all': expected a number"),
        ("labels", None, "data.labels=None: expected a string"),
        ("unlabelled_manifests", ("a.tsv", 3), "expected paths of .tsv files"),
        ("corpus", {"hours": "two"}, "data.corpus.hours='two': expected a number"),
        ("corpus", {"hour": 2.0}, r"unknown data.corpus keys \['hour'\]"),
        ("bucket_boundary", (96000,), r"unknown data keys \['bucket_boundary'\]"),
        ("source", "hub", "unknown data.source 'hub'; known: espeak, manifest, tfds"),
    ],
)
def test_malformed_config_value_is_one_line_naming_the_key(key, value, message):
    with pytest.raises(P.DataError, match=message) as err:
        data_config.check_config({key: value})
    assert "\n" not in str(err.value)


def test_malformed_override_is_a_config_error():
    """The user's path: an override the ConfigDict accepts (a tuple) but the data rejects."""
    config = config_lib.apply_overrides(config_lib.defaults(), ["data.bucket_boundaries=(1,'a')"])
    with pytest.raises(config_lib.ConfigError, match=r"^data.bucket_boundaries=\(1, 'a'\): "):
        config_lib.validate(config, num_devices=1)


def test_config_values_are_converted():
    cfg = data_config.resolve(
        {
            "bucket_boundaries": [2000.0, 4000],
            "max_sample_len": 4000.0,
            "min_sample_len": 1000,
            "unlabelled_manifests": "extra.tsv",
            "corpus": {"languages": ["en-us", "de"], "noise_snr": None},
        }
    )
    assert cfg.bucket_boundaries == (2000, 4000) and cfg.max_sample_len == 4000
    assert isinstance(cfg.max_sample_len, int) and cfg.unlabelled_manifests == ("extra.tsv",)
    assert cfg.corpus["languages"] == "en-us,de" and cfg.corpus["noise_snr"] == ()


# ----------------------------------------------------------------------------- bad input


def _plan_time_cases():
    """name -> (break(root), reason, file suffix, line) for problems found at load time."""

    def manifest(u, text):
        return lambda r: bc.edit_line(r / "valid.tsv", u + 2, text)

    def label(u, text):
        return lambda r: bc.edit_line(r / "valid.phn", u + 1, text)

    return {
        "bad_manifest_line": (manifest(2, b"no-tab-here"), "bad_manifest_line", "valid.tsv", 4),
        "missing_audio": (
            lambda r: bc.audio_path(r, "valid", 1).unlink(),
            "missing_audio",
            "valid.tsv",
            3,
        ),
        "zero_samples": (manifest(3, b"wav/valid/0003.flac\t0"), "empty_audio", "valid.tsv", 5),
        "empty_transcript": (label(4, b"  "), "empty_transcript", "valid.phn", 5),
        "non_utf8": (label(0, b"a \xff\xfe b |"), "non_utf8_transcript", "valid.phn", 1),
        "unknown_phone": (label(5, b"a zz b |"), "unknown_phone", "valid.phn", 6),
    }


@pytest.mark.parametrize("case", sorted(_plan_time_cases()))
def test_bad_input_found_at_load_time(fresh, case):
    brk, reason, fname, line = _plan_time_cases()[case]
    brk(fresh)
    cfg = cfg_for(fresh)
    stats = PipelineStats()
    split = manifest.load_split(
        fresh,
        "valid",
        cfg,
        vocabulary=sources.vocab(cfg),
        with_labels=True,
        crop=False,
        filter_short=False,
        stats=stats,
    )
    assert stats.skipped == {reason: 1} and len(split) == 5
    with pytest.raises(P.DataError, match=rf"{fname}:{line}: {reason}"):
        manifest.load_split(
            fresh,
            "valid",
            dict(cfg, strict=True),
            vocabulary=sources.vocab(cfg),
            with_labels=True,
            crop=False,
            filter_short=False,
        )


def test_label_count_mismatch_skips_whole_split(fresh):
    bc.edit_line(fresh / "valid.phn", 3, None)
    stats = PipelineStats()
    cfg = cfg_for(fresh)
    split = manifest.load_split(
        fresh, "valid", cfg, vocabulary=sources.vocab(cfg), with_labels=True, stats=stats
    )
    assert len(split) == 0 and stats.skipped == {"label_count_mismatch": 6}
    with pytest.raises(P.DataError, match="valid.phn: label_count_mismatch"):
        P.make_eval_iter(dict(cfg, strict=True), "valid")
    with pytest.raises(P.DataError, match="no usable examples"):  # nothing left to read
        P.make_eval_iter(cfg, "valid")


def _decode_time_cases():
    n = lambda r, u: bc.manifest_length(r, "valid", u)
    return {
        "unreadable": (
            lambda r: bc.audio_path(r, "valid", 0).write_bytes(b"not audio" * 50),
            "unreadable",
            0,
        ),
        "truncated": (lambda r: bc.truncate_audio(r, "valid", 1), None, 1),
        "wrong_sample_rate": (
            lambda r: bc.rewrite_audio(r, "valid", 2, bc.signal(2, n(r, 2)), sr=8000),
            "wrong_sample_rate",
            2,
        ),
        "multi_channel": (
            lambda r: bc.rewrite_audio(r, "valid", 3, np.stack([bc.signal(3, n(r, 3))] * 2, 1)),
            "multi_channel",
            3,
        ),
        "length_mismatch": (
            lambda r: bc.rewrite_audio(r, "valid", 4, bc.signal(4, 900)),
            "length_mismatch",
            4,
        ),
        # libsndfile cannot open a FLAC stream without frames at all
        "empty_file": (
            lambda r: bc.rewrite_audio(r, "valid", 5, np.zeros(0, np.int16)),
            ("empty_audio", "unreadable"),
            5,
        ),
    }


@pytest.mark.parametrize("case", sorted(_decode_time_cases()))
def test_bad_audio_found_at_decode_time(fresh, case, caplog):
    brk, reason, u = _decode_time_cases()[case]
    brk(fresh)
    cfg = cfg_for(fresh)
    it = P.make_eval_iter(cfg, "valid")
    batches = list(it)
    seen = sorted(u for b in batches for u in rows_of(b))
    assert seen == sorted(set(range(6)) - {u})
    skipped = dict(it.stats.skipped)
    if reason is None:  # a cut FLAC stream is either unreadable or reads short
        reason = ("unreadable", "truncated", "length_mismatch")
    assert len(skipped) == 1 and list(skipped)[0] in reason and sum(skipped.values()) == 1
    assert f"valid.tsv:{u + 2}" in caplog.text  # logged once, with the file
    for b in batches:  # weight-0 rows carry nothing to learn
        zero = b["weight"] == 0
        assert not b["phones_mask"][zero].any() and not b["labelled"][zero].any()
        assert np.isfinite(b["audio"]).all()
    with pytest.raises(P.DataError, match=rf"valid.tsv:{u + 2}: .*{u:04d}.flac: "):
        list(P.make_eval_iter(dict(cfg, strict=True), "valid"))


def test_skip_reason_logged_once(fresh, caplog):
    for u in (0, 1):
        bc.edit_line(fresh / "train.phn", u + 1, b"zz |")
    it = P.make_train_iter(cfg_for(fresh), seed=0)
    assert it.stats.skipped == {"unknown_phone": 2}
    assert caplog.text.count("unknown_phone") == 1
    assert it.stats()["skipped/unknown_phone"] == 2


def test_length_filters_and_crop(fresh):
    lengths = [bc.manifest_length(fresh, "train", u) for u in range(10)]
    cfg = cfg_for(
        fresh, min_sample_len=2500, max_sample_len=4000, bucket_boundaries=(4000,), crop=False
    )
    stats = PipelineStats()
    split = manifest.load_split(
        fresh, "train", cfg, vocabulary=sources.vocab(cfg), with_labels=True, stats=stats
    )
    assert stats.filtered == {
        "too_short": sum(n < 2500 for n in lengths),
        "too_long": sum(n > 4000 for n in lengths),
    }
    assert len(split) == sum(2500 <= n <= 4000 for n in lengths)
    # crop=True: long utterances are kept, cropped, and trained without their transcript.
    cfg = dict(cfg, crop=True, min_sample_len=0)
    it = P.make_train_iter(cfg, seed=0)
    for b in take(it, 6):
        assert b["audio"].shape[1] == 4000
        for row, lab in zip(b["audio"], b["labelled"]):
            assert lab == 0 or lengths[bc.utterance_of(row)] <= 4000
    assert it.stats.labelled_cropped == sum(n > 4000 for n in lengths)
    assert it.stats.cropped > 0


def test_claimed_length_is_checked_even_when_it_filters_the_row(fresh):
    """A manifest row lying about its sample count is a `length_mismatch` skip (strict: an
    error naming the manifest line and the file) also when the lie would only have filtered
    it as too short or too long, since such a row is never decoded; true lengths are still
    filtered."""
    lengths = [bc.manifest_length(fresh, "train", u) for u in range(10)]
    short, long_, ok = 0, 1, 2
    for u, claimed in ((short, 7), (long_, 10_000), (ok, 3000)):
        bc.edit_line(fresh / "train.tsv", u + 2, f"wav/train/{u:04d}.flac\t{claimed}".encode())
    bc.rewrite_audio(fresh, "train", ok, bc.signal(ok, 3000))  # its claim is true
    cfg = cfg_for(
        fresh, min_sample_len=2500, max_sample_len=4000, bucket_boundaries=(4000,), crop=False
    )
    stats = PipelineStats()
    manifest.load_split(
        fresh, "train", cfg, vocabulary=sources.vocab(cfg), with_labels=True, stats=stats
    )
    true = [3000 if u == ok else n for u, n in enumerate(lengths) if u not in (short, long_)]
    assert stats.skipped == {"length_mismatch": 2}
    assert stats.filtered == {
        "too_short": sum(n < 2500 for n in true),
        "too_long": sum(n > 4000 for n in true),
    }
    with pytest.raises(
        P.DataError,
        match=rf"train.tsv:2: length_mismatch \(\S+0000.flac: {lengths[0]} samples, the manifest says 7\)",
    ):
        manifest.load_split(
            fresh, "train", dict(cfg, strict=True), vocabulary=sources.vocab(cfg), with_labels=True
        )


# ----------------------------------------------------------------------------- bucketing


def test_bucketing_shapes_sizes_and_padding(corpus):
    cfg = cfg_for(corpus)
    batches = epoch_batches(cfg)
    lengths = {u: min(bc.manifest_length(corpus, "train", u), 8000) for u in range(48)}
    for b in batches:
        bucket = b["audio"].shape[1]
        assert bucket in cfg["bucket_boundaries"]
        assert b["audio"].shape[0] == batching.batch_size_for(cfg, bucket)
        assert b["phones"].shape == (b["audio"].shape[0], 32)
        for row, mask in zip(b["audio"], b["audio_mask"]):
            assert mask.sum() == lengths[bc.utterance_of(row)] <= bucket
            assert mask[: mask.sum()].all()
    seen = [u for b in batches for u in rows_of(b)]
    assert len(seen) == len(set(seen)) and len(seen) > 48 - batching.batch_size_for(cfg, 8000)
    it = P.make_train_iter(cfg, seed=0)
    take(it, 30)
    flat = P.make_train_iter(dict(cfg, bucket_boundaries=(8000,)), seed=0)
    take(flat, 30)
    assert it.stats.padding_fraction < flat.stats.padding_fraction - 0.1


def test_labels_and_masks_match_transcripts(corpus):
    cfg = cfg_for(corpus, crop=False, max_sample_len=12000, bucket_boundaries=(6000, 12000))
    vocab = sources.vocab(cfg)
    phn = (corpus / "train.phn").read_text().split("\n")
    for b in epoch_batches(cfg):
        assert b["labelled"].all()
        for row, ids, mask in zip(b["audio"], b["phones"], b["phones_mask"]):
            assert vocab.decode(ids[mask]) == phn[bc.utterance_of(row)]
            assert (ids[~mask] == 0).all()


def test_normalize(corpus):
    raw = next(P.make_train_iter(cfg_for(corpus), seed=0))
    b = next(P.make_train_iter(cfg_for(corpus, normalize=True), seed=0))
    for x, row, mask in zip(raw["audio"], b["audio"], b["audio_mask"]):
        x = x[mask]  # per utterance, the layer-norm formula of fairseq (eps 1e-5)
        np.testing.assert_allclose(
            row[mask], (x - x.mean()) / np.sqrt(x.var() + 1e-5), rtol=1e-4, atol=1e-5
        )
        assert (row[~mask] == 0).all()


# ----------------------------------------------------------------------------- sharding, resume


def test_two_hosts_read_disjoint_data_covering_the_epoch(corpus):
    cfg = cfg_for(corpus)
    single = epoch_batches(cfg)
    host = [epoch_batches(cfg, process_index=i, process_count=2) for i in (0, 1)]
    assert len(host[0]) == len(host[1]) == len(single)
    for g, a, b in zip(single, *host):
        assert a["audio"].shape == b["audio"].shape
        assert a["audio"].shape[0] * 2 == g["audio"].shape[0]
        assert rows_of(a) + rows_of(b) == rows_of(g)
        assert not set(rows_of(a)) & set(rows_of(b))
    with pytest.raises(ValueError, match="process_count"):
        P.make_train_iter(cfg, seed=0, process_index=0, process_count=3)


def test_determinism_and_seeds(corpus):
    cfg = cfg_for(corpus)
    a, b, c = (take(P.make_train_iter(cfg, seed=s), 8) for s in (3, 3, 4))
    for x, y in zip(a, b):
        assert_same(x, y)
    assert [rows_of(x) for x in a] != [rows_of(x) for x in c]


def test_epochs_reshuffle_and_crops_change(corpus):
    cfg = cfg_for(corpus)
    it = P.make_train_iter(cfg, seed=0)
    by_epoch = {0: [], 1: []}
    while it.position["epoch"] < 2:
        b = next(it)
        if it.position["epoch"] in by_epoch:
            by_epoch[it.position["epoch"]].append(b)
    assert [rows_of(b) for b in by_epoch[0]] != [rows_of(b) for b in by_epoch[1][:-1]]


def test_resume_gives_identical_batches(corpus):
    cfg = cfg_for(corpus)
    n_epoch = len(epoch_batches(cfg))
    for stop in (3, n_epoch - 2):  # mid-epoch, and across an epoch boundary
        it = P.make_train_iter(cfg, seed=1, process_index=1, process_count=2)
        take(it, stop)
        saved = json.loads(json.dumps(it.position))
        expected = take(it, 5)
        resumed = P.make_train_iter(
            cfg, seed=1, process_index=1, process_count=2, start_position=saved
        )
        for x, y in zip(expected, take(resumed, 5)):
            assert_same(x, y)


def test_resume_on_changed_data_warns(corpus, fresh, caplog):
    it = P.make_train_iter(cfg_for(corpus), seed=0)
    take(it, 2)
    P.make_train_iter(cfg_for(corpus), seed=0, start_position=it.position)
    assert "changed since" not in caplog.text
    P.make_train_iter(cfg_for(fresh), seed=0, start_position=it.position)
    assert "changed since" in caplog.text


def test_labelled_fraction(corpus):
    cfg = data_config.resolve(
        cfg_for(corpus, crop=False, max_sample_len=12000, bucket_boundaries=(12000,))
    )
    vocab = sources.vocab(cfg)
    subsets = {}
    for frac in (0.25, 0.5):
        s = manifest.load_split(
            corpus, "train", cfg, vocabulary=vocab, with_labels=True, labelled_fraction=frac, seed=7
        )
        subsets[frac] = set(np.flatnonzero(s.labelled))
        assert len(subsets[frac]) == 48 * frac
    assert subsets[0.25] < subsets[0.5]
    again = manifest.load_split(
        corpus, "train", cfg, vocabulary=vocab, with_labels=True, labelled_fraction=0.5, seed=7
    )
    assert set(np.flatnonzero(again.labelled)) == subsets[0.5]
    it = P.make_train_iter(
        dict(
            cfg_for(corpus, crop=False, max_sample_len=12000, bucket_boundaries=(12000,)),
            labelled_fraction=0.5,
        ),
        seed=7,
    )
    for b in take(it, 10):
        for row, lab, mask in zip(b["audio"], b["labelled"], b["phones_mask"]):
            assert (bc.utterance_of(row) in subsets[0.5]) == bool(lab) == mask.any()
    # labels='' reads no label file at all.
    b = next(P.make_train_iter(cfg_for(corpus, labels=""), seed=0))
    assert not b["labelled"].any() and not b["phones_mask"].any()
    # labelled_only: an epoch is exactly the labelled subset, every row with its transcript.
    only = dict(
        cfg_for(corpus, crop=False, max_sample_len=12000, bucket_boundaries=(12000,)),
        labelled_fraction=0.5,
        labelled_only=True,
    )
    batches = epoch_batches(only, seed=7)
    seen = [u for b in batches for u in rows_of(b)]
    assert all(b["labelled"].all() and b["phones_mask"].any(1).all() for b in batches)
    assert len(seen) == len(set(seen)) and set(seen) <= subsets[0.5]
    assert len(seen) >= 24 - batching.batch_size_for(
        data_config.resolve(only), 12000
    )  # minus the remainder
    for bad in (dict(only, crop=True), dict(only, labels=""), dict(only, labelled_fraction=0.0)):
        with pytest.raises(ValueError, match="labelled_only needs"):
            P.make_train_iter(bad, seed=0)


def test_unlabelled_manifests_join_the_training_split(corpus, tmp_path, caplog):
    """Rows of an extra manifest (another folder, no label file) are trained unlabelled, next
    to the labelled rows; a problem in one of them names its own manifest and line."""
    bc.write_split(tmp_path, "more", [3000] * 60, seed=3)
    lines = (tmp_path / "more.tsv").read_text().splitlines()
    (tmp_path / "more.tsv").write_text("\n".join(lines[:1] + lines[49:]) + "\n")  # ids 48..59
    (tmp_path / "more.phn").unlink()
    bc.truncate_audio(tmp_path, "more", 50)  # manifest line 4 of more.tsv
    cfg = dict(
        cfg_for(corpus, crop=False, max_sample_len=12000, bucket_boundaries=(12000,)),
        unlabelled_manifests=(str(tmp_path / "more.tsv"),),
    )
    batches = epoch_batches(cfg, seed=1)
    seen = set()
    for b in batches:
        for row, w, lab, mask in zip(b["audio"], b["weight"], b["labelled"], b["phones_mask"]):
            if w > 0:
                u = bc.utterance_of(row)
                seen.add(u)
                assert bool(lab) == mask.any() == (u < 48), u
    assert 50 not in seen and len(seen & set(range(48, 60))) >= 9
    assert len(seen) >= 59 - batching.batch_size_for(
        data_config.resolve(cfg), 12000
    )  # minus the remainder
    assert "more.tsv:4: " in caplog.text
    for bad in (dict(cfg, labelled_only=True), dict(cfg, source="tfds"), dict(cfg, speakers=True)):
        with pytest.raises(ValueError, match="unlabelled_manifests needs"):
            P.make_train_iter(bad, seed=0)
    with pytest.raises(P.DataError, match="not a .tsv manifest"):
        P.make_train_iter(dict(cfg, unlabelled_manifests=str(tmp_path)), seed=0)


# ----------------------------------------------------------------------------- eval


def test_eval_covers_every_example_once_across_hosts(corpus):
    cfg = cfg_for(corpus, batch_multiple=4)  # 13 utterances: a padded final batch
    host = [list(P.make_eval_iter(cfg, "valid", process_index=i, process_count=2)) for i in (0, 1)]
    assert len(host[0]) == len(host[1]) > 0
    seen = [u for h in host for b in h for u in rows_of(b)]
    assert sorted(seen) == list(range(13))
    for a, b in zip(*host):
        assert a["audio"].shape == b["audio"].shape
    lengths = [bc.manifest_length(corpus, "valid", u) for u in range(13)]
    for h in host:  # no crop: whole utterances, extra buckets past max_sample_len
        for b in h:
            for row, mask, w in zip(b["audio"], b["audio_mask"], b["weight"]):
                if w:
                    assert mask.sum() == lengths[bc.utterance_of(row)]
                    assert b["audio"].shape[1] % 2000 == 0
    assert sum(float(b["weight"].sum()) for h in host for b in h) == 13


# ----------------------------------------------------------------------------- tfds


def _tfds_examples(corpus, split):
    import soundfile as sf

    tsv = (corpus / f"{split}.tsv").read_text().split("\n")[1:]
    phn = (corpus / f"{split}.phn").read_text().split("\n")
    out = []
    for u, line in enumerate(row for row in tsv if row):
        x, _ = sf.read(corpus / line.split("\t")[0], dtype="int16")
        out.append((x, phn[u]))
    out.append((np.zeros(3000, np.int16) + 64 * 200, "a qq |"))  # unknown phone: skipped
    return out


@pytest.fixture
def mock_tfds(corpus):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    def as_dataset(self, split, **kwargs):
        ex = _tfds_examples(corpus, {"train_clean100": "train", "dev_clean": "valid"}[split])
        return tf.data.Dataset.from_generator(
            lambda: ({"speech": x, "text": t, "id": str(i)} for i, (x, t) in enumerate(ex)),
            output_signature={
                "speech": tf.TensorSpec([None], tf.int16),
                "text": tf.TensorSpec([], tf.string),
                "id": tf.TensorSpec([], tf.string),
            },
        )

    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        yield cfg_for(
            corpus,
            source="tfds",
            tfds_name="librispeech",
            tfds_data_dir=str(corpus / "tfds"),
            train_split="train_clean100",
            vocab_path=str(corpus / "dict.phn.txt"),
            shuffle_buffer=16,
        )


def _tfds_epoch0(cfg):
    """Epoch 0 of a tfds train iterator: its batches, the skip counts after each, the iterator
    (which has just yielded the first batch of epoch 1) and the position after epoch 0."""
    it = P.make_train_iter(cfg, seed=0)
    batches, counts, end = [], [], None
    while True:
        b = next(it)
        if it.position["epoch"] != 0:
            return batches, counts, it, end
        batches.append(b)
        counts.append(dict(it.stats.skipped))
        end = it.position
        assert len(batches) < 100, "epoch never ends"


def test_tfds_streaming_train_and_resume(mock_tfds):
    # 48 good examples + a bad one (last in the split, so with a shuffle buffer of 16 it comes
    # late in the epoch); most examples land in the largest bucket (2 rows), ~18 batches.
    cfg = mock_tfds
    batches, counts, it, end = _tfds_epoch0(cfg)
    for b in batches:
        bucket = b["audio"].shape[1]
        assert bucket in cfg["bucket_boundaries"]
        assert b["audio"].shape[0] == batching.batch_size_for(cfg, bucket)
        assert (b["audio_mask"].sum(1) <= bucket).all() and b["weight"].all()
    # The bad example is counted exactly once within epoch 0 (epoch 1's copy enters the shuffle
    # buffer only after 32 others, so it is not reached before epoch 1's first batch).
    assert counts[-1] == {"unknown_phone": 1} and it.stats.skipped == {"unknown_phone": 1}
    first = next(i for i, c in enumerate(counts) if c)
    assert counts[:first] == [{}] * first and counts[first:] == [counts[-1]] * (len(counts) - first)
    # Every good example of the epoch once: in a batch or in the dropped remainder.
    rows = [u for b in batches for u in rows_of(b)]
    assert len(rows) == len(set(rows)) and len(rows) + it.stats.dropped_remainder == 48
    # Counted at a deterministic point: the same batches and the same counts after every batch,
    # however far tf.data runs ahead of the consumer.
    for over in (dict(prefetch=1, num_parallel_calls=1), dict(prefetch=8, num_parallel_calls=2)):
        b2, c2, _, _ = _tfds_epoch0(dict(cfg, **over))
        assert c2 == counts and len(b2) == len(batches)
        for x, y in zip(batches, b2):
            assert_same(x, y)
    # Exact resume, counts included: from before the bad example, and from the epoch's end.
    it = P.make_train_iter(cfg, seed=0)
    take(it, first - 1)
    saved = it.position
    expected = take(it, 3)
    resumed = P.make_train_iter(cfg, seed=0, start_position=saved)
    for x, y in zip(expected, take(resumed, 3)):
        assert_same(x, y)
    assert resumed.stats.skipped == it.stats.skipped == {"unknown_phone": 1}
    expected = take(it, len(batches) - first - 2)  # the rest of epoch 0 ...
    expected += take(it, 2)  # ... and the start of epoch 1
    assert it.position["epoch"] == 1
    for x, y in zip(expected, take(resumed, len(expected))):
        assert_same(x, y)
    assert resumed.position == it.position

    resumed = P.make_train_iter(cfg, seed=0, start_position=end)
    for x, y in zip(expected[-2:], take(resumed, 2)):
        assert_same(x, y)
    assert resumed.stats.skipped == {}
    # Several hosts: tests/test_tfds.py (each reads its own share of the split).


def test_tfds_labelled_only_streams_the_labelled_subset(mock_tfds):
    cfg = dict(mock_tfds, crop=False, labelled_fraction=0.5, labelled_only=True)
    batches, counts, it, _ = _tfds_epoch0(cfg)
    assert all(b["labelled"].all() and b["phones_mask"].any(1).all() for b in batches)
    rows = [u for b in batches for u in rows_of(b)]
    assert len(rows) == len(set(rows)) and 12 <= len(rows) + it.stats.dropped_remainder <= 36
    assert counts[-1] == {"unknown_phone": 1}  # rejected examples are still counted


def test_tfds_eval_covers_split(mock_tfds):
    cfg = dict(mock_tfds, batch_multiple=4)
    batches = list(P.make_eval_iter(cfg, "dev_clean"))
    seen = [u for b in batches for u in rows_of(b)]
    assert sorted(seen) == list(range(13))
    assert all(
        b["audio"].shape[0] == batching.batch_size_for(cfg, b["audio"].shape[1]) for b in batches
    )
    with pytest.raises(P.DataError, match=r"dev_clean\[13\]: unknown_phone"):
        list(P.make_eval_iter(dict(cfg, strict=True), "dev_clean"))


# ----------------------------------------------------------------------------- mixing, text


class _Counter:
    def __init__(self, name, start=0):
        self.name, self.position = name, start

    def __next__(self):
        self.position += 1
        return (self.name, self.position)


def test_mix_ratio_and_resume():
    mixed = mixing.mix([_Counter("a"), _Counter("b")], [3, 1], seed=0)
    out = [next(mixed) for _ in range(100)]
    assert sum(name == "a" for name, _ in out) == 75
    for k in range(0, 100, 4):  # exact within every window of 4
        assert sum(name == "a" for name, _ in out[k : k + 4]) == 3
    pos = json.loads(json.dumps(mixed.position))
    expected = [next(mixed) for _ in range(10)]
    resumed = mixing.mix(
        [_Counter("a", pos["children"][0]), _Counter("b", pos["children"][1])],
        [3, 1],
        seed=0,
        start_position=pos,
    )
    assert [next(resumed) for _ in range(10)] == expected


def test_mixed_train_iter_resumes(corpus):
    cfgs = [cfg_for(corpus, labelled_fraction=1.0), cfg_for(corpus, labels="")]
    it = P.make_mixed_train_iter(cfgs, [1, 1], seed=0)
    first = take(it, 4)
    assert [b["labelled"].any() for b in first].count(False) == 2
    pos = json.loads(json.dumps(it.position))
    expected = take(it, 3)
    for x, y in zip(
        expected, take(P.make_mixed_train_iter(cfgs, [1, 1], seed=0, start_position=pos), 3)
    ):
        assert_same(x, y)


def test_text_iter(corpus, tmp_path):
    wrd = (corpus / "train.wrd").read_text().split("\n")[:-1]
    model = text_lib.train_char_model(wrd, tmp_path / "spm")
    sp = text_lib.load_sp(model)
    it = text_batches.make_text_iter(
        corpus / "train.wrd",
        model,
        seed=0,
        bucket_boundaries=(8, 16, 32),
        max_tokens_per_batch=64,
        batch_multiple=2,
    )
    for b in take(it, 10):
        assert set(b) == {"text", "text_mask", "weight"}
        assert b["text"].shape[1] in (8, 16, 32)
        assert b["text"].shape[0] == max(2, 64 // b["text"].shape[1] // 2 * 2)
        for ids, mask in zip(b["text"], b["text_mask"]):
            assert text_lib.sp_decode(sp, ids[mask]) in wrd and ids[mask][-1] == sp.eos_id()
            assert (ids[~mask] == 0).all()
    pos = it.position
    expected = take(it, 3)
    resumed = text_batches.make_text_iter(
        corpus / "train.wrd",
        sp,
        seed=0,
        bucket_boundaries=(8, 16, 32),
        max_tokens_per_batch=64,
        batch_multiple=2,
        start_position=pos,
    )
    for x, y in zip(expected, take(resumed, 3)):
        assert_same(x, y)


# ----------------------------------------------------------------------------- the eSpeak corpus


def test_espeak_corpus_batches(tiny_corpus):
    cfg = dict(
        SMALL,
        source="espeak",
        corpus=dict(hours=0.02, seed=0),
        max_sample_len=32000,
        bucket_boundaries=(16000, 32000),
        max_samples_per_batch=64000,
        max_label_len=256,
    )
    assert sources.resolve_data_dir(cfg) == tiny_corpus
    vocab = sources.vocab(cfg)
    phn = (tiny_corpus / "train.phn").read_text(encoding="utf-8").split("\n")
    it = P.make_train_iter(cfg, seed=0)
    for b in take(it, 6):
        for ids, mask, lab in zip(b["phones"], b["phones_mask"], b["labelled"]):
            assert not lab or vocab.decode(ids[mask]) in phn
    assert it.stats.skipped == {}
    n_valid = len((tiny_corpus / "valid.tsv").read_text().split("\n")) - 2
    ev = P.make_eval_iter(cfg, "valid")
    assert sum(float(b["weight"].sum()) for b in ev) == n_valid
    assert ev.stats()["skipped"] == 0


# ----------------------------------------------------------------------------- SpeechT5 speech


def frame_signal(u, n):
    """Sample k of utterance u = 64 u + (k // 320): a row tells its utterance and first frame."""
    return (64 * u + np.arange(n) // 320).astype(np.int16)


@pytest.fixture(scope="module")
def st5_corpus(tmp_path_factory):
    """The manifest corpus with frame-indexed audio, <split>.km (label of frame t of utterance
    u = 1000 u + t) and <split>.spk (valid has one speaker unseen in train)."""
    root = bc.write_corpus(tmp_path_factory.mktemp("st5"), n_train=16, n_valid=5)
    for split in ("train", "valid"):
        lengths = [
            int(r.split("\t")[1]) for r in (root / f"{split}.tsv").read_text().split("\n")[1:-1]
        ]
        for u, n in enumerate(lengths):
            bc.rewrite_audio(root, split, u, frame_signal(u, n))
        (root / f"{split}.km").write_text(
            "".join(
                " ".join(str(1000 * u + t) for t in range(F.conv_frames(n))) + "\n"
                for u, n in enumerate(lengths)
            )
        )
        names = [f"s{u % 3}" if split == "train" or u else "new" for u in range(len(lengths))]
        (root / f"{split}.spk").write_text("".join(f"{s}\n" for s in names))
    return root


def st5_cfg(root, **over):
    return cfg_for(root, km_labels="km", log_mel=True, speakers=True, **over)


def check_st5_batch(batch, train=True):
    T, Fm = batch["km"].shape[1], batch["mel"].shape[1]
    S = batch["audio"].shape[1]
    assert (T, Fm) == (F.conv_frames(S), F.mel_frames(S)) and batch["mel"].shape[2] == 80
    for r in np.flatnonzero(batch["weight"] > 0):
        n = int(batch["audio_mask"][r].sum())
        samples = np.round(batch["audio"][r, :n] * 32768).astype(int)
        u, first = samples[0] // 64, samples[0] % 64  # utterance, first frame of the crop
        assert samples[319] % 64 == first  # the crop starts on a frame boundary
        frames = F.conv_frames(n)
        assert batch["km_mask"][r].sum() == frames
        np.testing.assert_array_equal(batch["km"][r, :frames], 1000 * u + first + np.arange(frames))
        mel = F.log_mel(batch["audio"][r, :n])
        assert batch["mel_mask"][r].sum() == len(mel)
        np.testing.assert_allclose(batch["mel"][r, : len(mel)], mel, atol=1e-6)
        assert batch["speaker"][r] == (u % 3 if train else (u % 3 if u else -1))


def test_speecht5_speech_batches_and_resume(st5_corpus):
    cfg = st5_cfg(st5_corpus)
    it = P.make_train_iter(cfg, seed=0)
    batches = take(it, 6)
    for b in batches:
        check_st5_batch(b)
    assert it.stats.cropped > 0  # crops were frame aligned
    pos = json.loads(json.dumps(it.position))
    expected = take(it, 2)
    for x, y in zip(expected, take(P.make_train_iter(cfg, seed=0, start_position=pos), 2)):
        assert_same(x, y)
    for b in P.make_eval_iter(cfg, "valid"):
        check_st5_batch(b, train=False)
    assert manifest.speaker_names(st5_corpus, cfg) == ["s0", "s1", "s2"]
    # UniSpeech batches are unchanged: no extra keys unless asked for.
    assert set(next(P.make_train_iter(cfg_for(st5_corpus), seed=0))) == set(batching.BATCH_KEYS)


def test_speecht5_bad_labels(st5_corpus, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(st5_corpus, root)
    bc.edit_line(root / "train.km", 2, b"1 2 x")
    bc.edit_line(root / "train.km", 3, b"1 2 3")
    bc.edit_line(root / "train.spk", 4, b"")
    bc.truncate_audio(root, "train", 5)
    cfg = st5_cfg(root)
    it = P.make_train_iter(cfg, seed=0)
    for b in take(it, 8):
        check_st5_batch(b)
        good = np.flatnonzero(b["weight"] > 0)[0]
        for r in np.flatnonzero(b["weight"] == 0):  # the unreadable row: a copy of a good one
            assert not b["phones_mask"][r].any()
            for key in ("audio", "km", "km_mask", "mel", "mel_mask", "speaker"):
                np.testing.assert_array_equal(b[key][r], b[key][good], err_msg=key)
    assert it.stats()["skipped/bad_km_labels"] == 1
    assert it.stats()["skipped/km_length_mismatch"] == 1
    assert it.stats()["skipped/empty_speaker"] == 1
    assert it.stats()["skipped/unreadable"] >= 1
    with pytest.raises(P.DataError, match=r"train\.km:2: bad_km_labels"):
        P.make_train_iter(dict(cfg, strict=True), seed=0)
    bc.edit_line(root / "train.km", 1, None)
    stats = PipelineStats()
    assert not len(
        manifest.load_split(root, "train", cfg, vocabulary=None, with_labels=False, stats=stats)
    )
    assert stats.skipped["label_count_mismatch"] == 16
    with pytest.raises(P.DataError, match=r"label file not found: .*valid\.frames"):
        P.make_eval_iter(cfg_for(root, km_labels="frames"), "valid")
    with pytest.raises(ValueError, match="manifest or espeak"):
        P.make_train_iter({"source": "tfds", "tfds_name": "x", "log_mel": True}, seed=0)


# ----------------------------------------------------------------------------- SpeechT5 text


def test_text_iter_infilling(corpus, tmp_path):
    wrd = (corpus / "train.wrd").read_text().split("\n")[:-1]
    sp = text_lib.load_sp(text_lib.train_char_model(wrd, tmp_path / "spm"))
    kw = {
        "seed": 0,
        "bucket_boundaries": (8, 16, 32),
        "max_tokens_per_batch": 64,
        "batch_multiple": 2,
        "infill": True,
    }
    it = text_batches.make_text_iter(corpus / "train.wrd", sp, **kw)
    mask_id, masks, total = text_lib.mask_token_id(sp), 0, 0
    for b in take(it, 10):
        assert set(b) == {"text", "text_mask", "text_source", "text_source_mask", "weight"}
        assert b["text_source"].shape == b["text"].shape
        for src, smask, tgt, tmask in zip(
            b["text_source"], b["text_source_mask"], b["text"], b["text_mask"]
        ):
            assert smask.sum() <= tmask.sum() and (src[~smask] == 0).all()
            assert src[smask][-1] == tgt[tmask][-1] == sp.eos_id()
            masks += (src == mask_id).sum()
            total += tmask.sum() - 1
        assert text_lib.sp_decode(sp, b["text"][0][b["text_mask"][0]]) in wrd
    assert masks > 0.05 * total
    pos = it.position
    expected = take(it, 3)
    resumed = text_batches.make_text_iter(corpus / "train.wrd", sp, start_position=pos, **kw)
    for x, y in zip(expected, take(resumed, 3)):
        assert_same(x, y)
