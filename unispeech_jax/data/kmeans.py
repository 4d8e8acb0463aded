"""Frame labels for HuBERT-style masked prediction (SpeechT5 speech pre-training): features of
a corpus, k-means, one label file per split. `make_labels` is the whole job; its command line
is `python -m unispeech_jax.tools.kmeans_labels`, and `ensure_labels` makes the labels
`data.km_clusters` asks for on first use.

For every split, `OUT/<split>.km` holds one line per manifest row of `DIR/<split>.tsv`: the
space-separated cluster ids of the utterance's 20 ms frames, exactly `conv_frames(num_samples)`
of them (frame t covers samples [320 t, 320 t + 400), the receptive field of conv frame t of
the model). The pipeline reads it with `data.km_labels='km'`, `data.km_dir=OUT`.

Features, one of:
- default, first iteration: MFCC + deltas + delta-deltas (39 dims, `data/features.py`);
- `feature_fn` (second iteration, e.g. a layer of a trained model): a callable
  float32 [S] waveform at 16 kHz -> float [conv_frames(S), D]; on the command line
  `--feature-fn pkg.module:function` names it;
- `features_dir` (`--features-dir FEATS`): features dumped beforehand, `FEATS/<split>.npy` float [sum T, D]
  (all utterances of the split concatenated in manifest order) and `FEATS/<split>.len`
  (one T per line).

The clustering: features are standardised with the mean and standard deviation of the fit
split (so that no dimension dominates the distances), at most `max_fit_frames` frames of it
are sampled, k-means++ seeds the centroids and Lloyd iterations refine them until the mean
squared distance improves by less than `tol` (relative) or `iters` is reached. Everything
random comes from `seed`: the same inputs give the same files.
`OUT/kmeans.npz` keeps (centroids, mean, std) and `OUT/dict.km.txt` the fairseq dictionary
of the ids (frame counts of the fit split).

Bad input is an error naming the file: a missing corpus or manifest, an empty split, an
unreadable audio file, a sample rate other than 16 kHz, a length that disagrees with the
manifest, features whose frame count is not `conv_frames(num_samples)`. A label file must
never be misaligned with its manifest, so nothing is skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from unispeech_jax.data import features as features_lib
from unispeech_jax.data.audio import read_audio
from unispeech_jax.data.cache import build_atomically
from unispeech_jax.data.manifest import Split, clustered_labels_dir, load_split
from unispeech_jax.data.stats import DataError

logger = logging.getLogger(__name__)

FeatureFn = Callable[[np.ndarray], np.ndarray]


class KMeansError(DataError):
    """Bad input to the label maker; the message names the file."""


# ============================================================================ k-means


def nearest(
    x: np.ndarray, centroids: np.ndarray, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Closest centroid of every row: float [N, D], [K, D] -> (int32 [N] ids, float32 [N]
    squared distances). Ties go to the lower id."""
    c = np.asarray(centroids, np.float32)
    c_sq = np.einsum("kd,kd->k", c, c)
    ids = np.empty(len(x), np.int32)
    dist = np.empty(len(x), np.float32)
    for lo in range(0, len(x), chunk):
        part = np.asarray(x[lo : lo + chunk], np.float32)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2: one matmul per chunk, |x|^2 only for the minimum.
        d = part @ (-2.0 * c.T)
        d += c_sq
        best = d.argmin(1)
        ids[lo : lo + chunk] = best
        closest = np.take_along_axis(d, best[:, None], 1)[:, 0]
        dist[lo : lo + chunk] = np.maximum(0.0, closest + np.einsum("nd,nd->n", part, part))
    return ids, dist


def cluster_sums(x: np.ndarray, labels: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
    """float64 [k, D] sum of the rows of float [N, D] per label (int [N] in [0, k))."""
    sums = np.zeros((k, x.shape[1]), np.float64)
    for lo in range(0, len(x), chunk):
        part = labels[lo : lo + chunk]
        one_hot = (part[:, None] == np.arange(k)[None, :]).astype(np.float32)
        sums += one_hot.T @ x[lo : lo + chunk]
    return sums


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: float32 [N, D] -> float32 [k, D] (each new centroid drawn with
    probability proportional to the squared distance to the closest one so far)."""
    x_sq = np.einsum("nd,nd->n", x, x)

    def distance_to(i):  # float64 [N] squared distances to point i: one mat-vec
        return np.maximum(0.0, x_sq - 2.0 * (x @ x[i]) + x_sq[i]).astype(np.float64)

    chosen = [int(rng.integers(len(x)))]
    dist = distance_to(chosen[0])
    for _ in range(1, k):
        total = dist.sum()
        # All points already sit on centroids (fewer distinct points than k): pick uniformly.
        i = int(rng.choice(len(x), p=dist / total)) if total > 0 else int(rng.integers(len(x)))
        chosen.append(i)
        dist = np.minimum(dist, distance_to(i))
    return x[chosen].astype(np.float32)


def fit_kmeans(
    x: np.ndarray, k: int, *, seed: int, iters: int = 50, tol: float = 1e-4
) -> tuple[np.ndarray, dict[str, float]]:
    """Lloyd's k-means from k-means++ seeds: float [N, D] -> (float32 [k, D] centroids, info).

    Stops when an iteration lowers the mean squared distance by less than a fraction `tol`, or
    after `iters` iterations. An emptied cluster is moved to the point farthest from its
    centroid, so all k ids stay in use. Deterministic in `seed`.
    """
    x = np.asarray(x, np.float32)
    if len(x) < k:
        raise KMeansError(f"k-means: {len(x)} frames for k={k} clusters")
    centroids = kmeans_plus_plus(x, k, np.random.default_rng([seed, 2]))
    previous = np.inf
    for step in range(1, iters + 1):  # noqa: B007 (the count is reported below)
        labels, dist = nearest(x, centroids)
        inertia = float(dist.mean(dtype=np.float64))
        counts = np.bincount(labels, minlength=k)
        for empty in np.flatnonzero(counts == 0):
            far = int(dist.argmax())
            counts[labels[far]] -= 1
            labels[far], dist[far], counts[empty] = empty, 0.0, 1
        sums = cluster_sums(x, labels, k)
        # A cluster emptied by the move above keeps its centroid until the next iteration.
        centroids = np.where(
            counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centroids
        ).astype(np.float32)
        if previous - inertia <= tol * inertia:
            break
        previous = inertia
    _, dist = nearest(x, centroids)
    return centroids, {"iterations": step, "inertia_per_frame": float(dist.mean())}


# ============================================================================ corpus access


def load_manifest(corpus: Path, split: str) -> Split:
    """Every row of `corpus/<split>.tsv` (no filtering; a malformed row or a missing audio
    file raises a DataError naming the manifest line)."""
    cfg = {
        "source": "manifest",
        "manifest_dir": str(corpus),
        "labels": "",
        "strict": True,
    }
    try:
        split_rows = load_split(
            corpus,
            split,
            cfg,
            vocabulary=None,
            with_labels=False,
            crop=False,
            filter_short=False,
        )
    except DataError as e:
        raise KMeansError(str(e)) from None
    if not len(split_rows):
        raise KMeansError(f"{split_rows.manifest}: empty split (no utterances)")
    return split_rows


def _read_checked(path: str, expected: int) -> np.ndarray:
    """float32 [expected] samples of `path` (mono, 16 kHz); KMeansError naming it if not."""
    x, reason, detail = read_audio(path, expected)
    if reason is not None:
        raise KMeansError(f"{path}: {detail} ({reason})" if detail else f"{path}: {reason}")
    return x


def _checked(feats: np.ndarray, num_samples: int, where: str) -> np.ndarray:
    feats = np.asarray(feats, np.float32)
    frames = features_lib.conv_frames(num_samples)
    if feats.ndim != 2 or len(feats) != frames:
        raise KMeansError(
            f"{where}: features of shape {feats.shape}, expected [{frames}, D] "
            f"(conv_frames({num_samples}))"
        )
    if not np.isfinite(feats).all():
        raise KMeansError(f"{where}: non-finite features")
    return feats


def audio_features(rows: Split, feature_fn: FeatureFn) -> Iterator[np.ndarray]:
    """float32 [T_i, D] features of every row of a split, in manifest order."""
    for path, n in zip(rows.paths, rows.lengths):
        yield _checked(feature_fn(_read_checked(path, int(n))), int(n), path)


def dumped_features(rows: Split, features_dir: Path, split: str) -> Iterator[np.ndarray]:
    """The rows of `features_dir/<split>.npy` cut by `<split>.len`, checked against the
    manifest's lengths."""
    npy, lens = features_dir / f"{split}.npy", features_dir / f"{split}.len"
    for f in (npy, lens):
        if not f.is_file():
            raise KMeansError(f"features file not found: {f}")
    try:
        counts = [int(line) for line in lens.read_text().split()]
    except ValueError:
        raise KMeansError(f"{lens}: expected one integer frame count per line") from None
    if len(counts) != len(rows):
        raise KMeansError(f"{lens}: {len(counts)} lines for {len(rows)} rows of {rows.manifest}")
    data = np.load(npy, mmap_mode="r")
    if data.ndim != 2 or len(data) != sum(counts):
        raise KMeansError(f"{npy}: shape {data.shape}, {lens} sums to {sum(counts)} frames")
    offset = 0
    for j, (count, n) in enumerate(zip(counts, rows.lengths)):
        where = f"{npy} (utterance {j}, {lens}:{j + 1})"
        yield _checked(data[offset : offset + count], int(n), where)
        offset += count


# ============================================================================ the tool


def _features_of(rows, split, feature_fn, features_dir) -> Iterator[np.ndarray]:
    if features_dir is not None:
        return dumped_features(rows, Path(features_dir), split)
    return audio_features(rows, feature_fn)


def _fit_sample(
    rows, split, feature_fn, features_dir, max_frames, seed
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Frames of the fit split, each kept with probability max_frames / total (seeded):
    (float32 [N, D], the per-utterance features when all were kept, else None)."""
    total = int(features_lib.conv_frames(rows.lengths).sum())
    keep = min(1.0, max_frames / max(total, 1))
    rng = np.random.default_rng([seed, 1])
    parts = []
    for feats in _features_of(rows, split, feature_fn, features_dir):
        parts.append(feats if keep == 1.0 else feats[rng.random(len(feats)) < keep])
    return np.concatenate(parts), (parts if keep == 1.0 else None)


def make_labels(
    corpus: str | Path,
    out: str | Path,
    k: int = 100,
    *,
    splits: Sequence[str] = ("train", "valid", "test"),
    fit_split: str = "train",
    seed: int = 0,
    iters: int = 50,
    tol: float = 1e-4,
    max_fit_frames: int = 1_000_000,
    feature_fn: FeatureFn = features_lib.mfcc_deltas,
    features_dir: str | Path | None = None,
) -> dict:
    """Fits k-means on `fit_split` and writes `out/<split>.km` for every split (see the module
    docstring). Returns a summary (sizes, iterations, inertia, cluster usage, seconds)."""
    corpus, out = Path(corpus), Path(out)
    if not corpus.is_dir():
        raise KMeansError(f"corpus not found: {corpus}")
    if k < 2:
        raise KMeansError(f"--k must be at least 2, got {k}")
    start = time.perf_counter()
    manifests = {s: load_manifest(corpus, s) for s in dict.fromkeys([fit_split, *splits])}
    fit_rows = manifests[fit_split]
    sample, fit_features = _fit_sample(
        fit_rows, fit_split, feature_fn, features_dir, max_fit_frames, seed
    )
    mean = sample.mean(0)
    std = np.maximum(sample.std(0), 1e-5)
    logger.info(
        "%d frames of %s sampled (%.1f s)",
        len(sample),
        fit_split,
        time.perf_counter() - start,
    )
    centroids, info = fit_kmeans((sample - mean) / std, k, seed=seed, iters=iters, tol=tol)
    logger.info("k-means: %s (%.1f s)", info, time.perf_counter() - start)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "kmeans.npz", centroids=centroids, mean=mean, std=std)
    summary = {
        "k": k,
        "seed": seed,
        "fit_split": fit_split,
        "fit_frames": len(sample),
        **info,
    }
    for split in splits:
        rows = manifests[split]
        counts = np.zeros(k, np.int64)
        lines = []
        # The fit split's features are still in memory unless they were subsampled.
        if split == fit_split and fit_features is not None:
            split_features = iter(fit_features)
        else:
            split_features = _features_of(rows, split, feature_fn, features_dir)
        for feats in split_features:
            ids, _ = nearest((feats - mean) / std, centroids)
            counts += np.bincount(ids, minlength=k)
            lines.append(" ".join(map(str, ids.tolist())) + "\n")
        (out / f"{split}.km").write_text("".join(lines), encoding="utf-8")
        summary[f"{split}/utterances"] = len(rows)
        summary[f"{split}/clusters_used"] = int((counts > 0).sum())
        if split == fit_split:
            order = np.argsort(-counts, kind="stable")
            (out / "dict.km.txt").write_text(
                "".join(f"{i} {counts[i]}\n" for i in order), encoding="utf-8"
            )
    summary["seconds"] = round(time.perf_counter() - start, 2)
    (out / "kmeans.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def ensure_labels(
    corpus: str | Path, k: int, *, splits: Sequence[str] = ("train", "valid", "test")
) -> Path:
    """`corpus/km<k>`: MFCC k-means labels of the corpus (seed 0), made on first use.

    What `data.km_clusters` asks for, so that a fresh machine needs no separate labelling
    command. The labels are written into a temporary sibling and renamed into place when
    complete (kmeans.json is written last), so a half-written folder is never used; processes
    racing both compute the same labels and the first rename wins.
    """
    corpus = Path(corpus)
    final = clustered_labels_dir(corpus, k)
    if (final / "kmeans.json").is_file():
        return final
    logger.info("making k-means frame labels (k=%d) of %s once, into %s", k, corpus, final)
    return build_atomically(
        final, "kmeans.json", lambda tmp: make_labels(corpus, tmp, k, splits=splits)
    )
