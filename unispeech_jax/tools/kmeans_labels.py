"""Command line of the k-means frame labels (data/kmeans.py says what they are and how they
are made).

    python -m unispeech_jax.tools.kmeans_labels --corpus DIR --k 100 --out OUT
        [--splits train,valid,test] [--fit-split train] [--seed 0] [--iters 50] [--tol 1e-4]
        [--max-fit-frames 1000000] [--feature-fn pkg.module:function | --features-dir FEATS]

For every split, `OUT/<split>.km` holds the cluster ids of the 20 ms conv frames of each
manifest row of `DIR/<split>.tsv`; `OUT/kmeans.npz`, `OUT/dict.km.txt` and `OUT/kmeans.json`
keep the centroids, the id counts and a summary. The pipeline reads the labels with
`data.km_labels='km'`, `data.km_dir=OUT`. `--feature-fn` names a callable float32 [S]
waveform -> float [conv_frames(S), D]; `--features-dir` a folder of dumped features
(`<split>.npy` float [sum T, D], `<split>.len`). Bad input: one line naming the file, exit
status 2.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before the heavy imports: hostmem may replace the process
    from unispeech_jax import hostmem

    hostmem.reexec_with_huge_pages()

import importlib
import json
import logging
from collections.abc import Sequence

from unispeech_jax import errors
from unispeech_jax.data import features as features_lib
from unispeech_jax.data import kmeans

logger = logging.getLogger(__name__)


def _import_callable(spec: str) -> kmeans.FeatureFn:
    """'pkg.module:function' -> the function."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise kmeans.KMeansError(f"--feature-fn: expected 'pkg.module:function', got {spec!r}")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise kmeans.KMeansError(f"--feature-fn: {spec} is not a callable")
    return fn


def main(argv: Sequence[str] | None = None) -> dict:
    parser = errors.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True, help="folder with <split>.tsv manifests")
    parser.add_argument("--out", required=True, help="folder for <split>.km")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--splits", default="train,valid,test")
    parser.add_argument("--fit-split", default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-fit-frames", type=int, default=1_000_000)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--feature-fn", help="pkg.module:function, waveform -> [T, D]")
    source.add_argument("--features-dir", help="folder with <split>.npy and <split>.len")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = kmeans.make_labels(
            args.corpus,
            args.out,
            args.k,
            splits=[s.strip() for s in args.splits.split(",") if s.strip()],
            fit_split=args.fit_split,
            seed=args.seed,
            iters=args.iters,
            tol=args.tol,
            max_fit_frames=args.max_fit_frames,
            feature_fn=_import_callable(args.feature_fn)
            if args.feature_fn
            else features_lib.mfcc_deltas,
            features_dir=args.features_dir,
        )
    except kmeans.KMeansError as e:
        parser.exit(2, f"error: {e}\n")
    logger.info("%s", json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
