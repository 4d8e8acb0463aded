"""Input pipeline throughput and padding, with and without length bucketing.

    python bench/input_pipeline.py                       # the embedded eSpeak corpus (1 h)
    python bench/input_pipeline.py --hours 2 --batches 100 --repeats 3
    python bench/input_pipeline.py --manifest-dir /data/librispeech --max-sample-len 250000

"without bucketing" = one bucket at max_sample_len. Each repeat builds a fresh iterator (new
seed), skips --warmup batches, then times --batches batches; the table shows the median over
repeats. Throughput counts real (weight 1) examples and their unpadded audio.
"""

from __future__ import annotations

import argparse
import statistics
import time

from unispeech_jax.data import data_config, pipeline, sources


def measure(cfg: dict, batches: int, warmup: int, seed: int) -> dict:
    it = pipeline.make_train_iter(cfg, seed=seed, process_index=0, process_count=1)
    for _ in range(warmup):
        next(it)
    examples = real = total = 0
    start = time.perf_counter()
    for _ in range(batches):
        b = next(it)
        keep = b["weight"] > 0
        examples += int(keep.sum())
        real += int(b["audio_mask"][keep].sum())
        total += int(keep.sum()) * b["audio"].shape[1]
    elapsed = time.perf_counter() - start
    return {
        "examples/s": examples / elapsed,
        "audio s/s": real / cfg["sample_rate"] / elapsed,
        "padding": 1.0 - real / total,
        "batch/s": batches / elapsed,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest-dir", default="", help="default: the eSpeak corpus")
    p.add_argument("--hours", type=float, default=1.0, help="eSpeak corpus size")
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-sample-len", type=int, default=96000)
    p.add_argument("--boundaries", default="32000,48000,64000,96000")
    p.add_argument("--max-samples-per-batch", type=int, default=384000)
    p.add_argument("--batch-multiple", type=int, default=8)
    p.add_argument("--num-parallel-calls", type=int, default=2)
    p.add_argument("--normalize", action="store_true")
    args = p.parse_args(argv)

    boundaries = tuple(int(b) for b in args.boundaries.split(","))
    base = data_config.default_config().to_dict()
    base.update(
        max_sample_len=args.max_sample_len,
        max_samples_per_batch=args.max_samples_per_batch,
        batch_multiple=args.batch_multiple,
        num_parallel_calls=args.num_parallel_calls,
        normalize=args.normalize,
    )
    if args.manifest_dir:
        base.update(source="manifest", manifest_dir=args.manifest_dir)
    else:
        base.update(source="espeak", corpus=dict(base["corpus"], hours=args.hours))
        base.update(source="manifest", manifest_dir=str(sources.resolve_data_dir(base)))
    modes = {
        "bucketed " + str(boundaries): dict(base, bucket_boundaries=boundaries),
        f"one bucket ({args.max_sample_len})": dict(base, bucket_boundaries=(args.max_sample_len,)),
    }
    print(
        f"data: {base['manifest_dir']}; {args.batches} batches after {args.warmup} warm-up, "
        f"median of {args.repeats}"
    )
    header = f"{'mode':<40} {'examples/s':>11} {'audio s/s':>10} {'padding':>8} {'batch/s':>8}"
    print(header)
    print("-" * len(header))
    for name, cfg in modes.items():
        runs = [measure(cfg, args.batches, args.warmup, seed) for seed in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{name:<40} {med['examples/s']:>11.1f} {med['audio s/s']:>10.1f} "
            f"{med['padding']:>8.1%} {med['batch/s']:>8.2f}"
        )


if __name__ == "__main__":
    main()
