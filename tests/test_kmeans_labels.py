"""The k-means label tool: alignment to conv frames, determinism, feature sources, errors."""

import broken_corpus as bc
import numpy as np
import pytest

from unispeech_jax.data import features as F
from unispeech_jax.data import kmeans as km
from unispeech_jax.tools import kmeans_labels


def read_km(path):
    return [np.asarray(line.split(), int) for line in path.read_text().split("\n")[:-1]]


def manifest_lengths(root, split):
    rows = (root / f"{split}.tsv").read_text().split("\n")[1:-1]
    return [int(r.split("\t")[1]) for r in rows]


def phase_features(x):
    """A fake 'model layer': frame t -> 10 * (t % 3) + a little signal: 3 obvious clusters."""
    t = np.arange(F.conv_frames(len(x)))
    return (10.0 * (t % 3) + x[t * F.CONV_HOP])[:, None]


@pytest.fixture
def small(tmp_path):
    return bc.write_corpus(tmp_path / "c", n_train=12, n_valid=5, min_len=1000, max_len=7000)


def test_mfcc_labels_on_espeak_corpus_are_aligned_and_deterministic(tiny_corpus, tmp_path):
    summary = km.make_labels(tiny_corpus, tmp_path / "a", k=16, iters=10)
    for split in ("train", "valid", "test"):
        labels = read_km(tmp_path / "a" / f"{split}.km")
        lengths = manifest_lengths(tiny_corpus, split)
        assert [len(x) for x in labels] == [F.conv_frames(n) for n in lengths]
        assert all(((x >= 0) & (x < 16)).all() for x in labels)
    assert summary["train/clusters_used"] == 16
    dictionary = (tmp_path / "a" / "dict.km.txt").read_text().split("\n")[:-1]
    assert sorted(int(line.split()[0]) for line in dictionary) == list(range(16))
    km.make_labels(tiny_corpus, tmp_path / "b", k=16, iters=10, splits=["train"])
    # Another seed, and k-means on a sample of the frames (features computed twice).
    summary = km.make_labels(
        tiny_corpus,
        tmp_path / "c",
        k=16,
        iters=10,
        splits=["train"],
        seed=1,
        max_fit_frames=1000,
    )
    assert 900 < summary["fit_frames"] < 1100
    same = (tmp_path / "a" / "train.km").read_text()
    assert (tmp_path / "b" / "train.km").read_text() == same
    other = read_km(tmp_path / "c" / "train.km")
    assert [len(x) for x in other] == [len(x) for x in read_km(tmp_path / "a" / "train.km")]
    assert (tmp_path / "c" / "train.km").read_text() != same


def test_feature_function_and_dumped_features(small, tmp_path):
    km.make_labels(small, tmp_path / "fn", k=3, feature_fn=phase_features, splits=["train"])
    for n, labels in zip(manifest_lengths(small, "train"), read_km(tmp_path / "fn" / "train.km")):
        t = np.arange(F.conv_frames(n))
        # The clusters are the three phases, whatever their ids.
        assert len(set(zip(t % 3, labels))) == 3 == len(set(labels))
    # The same features dumped to <split>.npy + <split>.len give the same labels.
    feats = [
        phase_features(bc.signal(u, n) / 32768)
        for u, n in enumerate(manifest_lengths(small, "train"))
    ]
    dump = tmp_path / "dump"
    dump.mkdir()
    np.save(dump / "train.npy", np.concatenate(feats).astype(np.float32))
    (dump / "train.len").write_text("".join(f"{len(f)}\n" for f in feats))
    km.make_labels(small, tmp_path / "dir", k=3, features_dir=dump, splits=["train"])
    assert (tmp_path / "dir" / "train.km").read_text() == (tmp_path / "fn" / "train.km").read_text()
    # The command line names the callable as module:function.
    kmeans_labels.main(
        [
            "--corpus",
            str(small),
            "--out",
            str(tmp_path / "cli"),
            "--k",
            "3",
            "--splits",
            "train",
            "--feature-fn",
            "test_kmeans_labels:phase_features",
        ]
    )
    assert (tmp_path / "cli" / "train.km").read_text() == (tmp_path / "fn" / "train.km").read_text()


def test_errors_name_the_file(small, tmp_path):
    with pytest.raises(km.KMeansError, match="corpus not found: .*nowhere"):
        km.make_labels(tmp_path / "nowhere", tmp_path / "o", k=3)
    with pytest.raises(km.KMeansError, match=r"test\.tsv"):  # no test split in this corpus
        km.make_labels(small, tmp_path / "o", k=3)
    (small / "valid.tsv").write_text(".\n")
    with pytest.raises(km.KMeansError, match=r"valid\.tsv: empty split"):
        km.make_labels(small, tmp_path / "o", k=3, splits=["train", "valid"])
    bad_shape = lambda x: np.zeros((3, 2))
    with pytest.raises(km.KMeansError, match=r"0000\.flac: features of shape \(3, 2\)"):
        km.make_labels(small, tmp_path / "o", k=3, splits=["train"], feature_fn=bad_shape)
    with pytest.raises(km.KMeansError, match=r"features file not found: .*train\.npy"):
        km.make_labels(small, tmp_path / "o", k=3, splits=["train"], features_dir=tmp_path)
    bc.rewrite_audio(small, "train", 4, bc.signal(4, 500))
    with pytest.raises(
        km.KMeansError, match=r"0004\.flac: 500 samples, the manifest says \d+ \(length_mismatch\)"
    ):
        km.make_labels(small, tmp_path / "o", k=3, splits=["train"])


def test_fit_kmeans_finds_blobs_and_survives_duplicates():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    x = np.concatenate([c + rng.normal(0, 0.5, (200, 2)) for c in centres]).astype(np.float32)
    found, info = km.fit_kmeans(x, 4, seed=0)
    dist = np.abs(found[:, None] - centres[None]).sum(-1).min(0)
    assert (dist < 0.3).all() and info["iterations"] < 10
    # Fewer distinct points than clusters: no NaN, every id still has a member.
    dup = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], np.float32), 10, 0)
    found, _ = km.fit_kmeans(dup, 5, seed=0, iters=5)
    assert np.isfinite(found).all()
    with pytest.raises(km.KMeansError, match="2 frames for k=3"):
        km.fit_kmeans(dup[:2], 3, seed=0)
