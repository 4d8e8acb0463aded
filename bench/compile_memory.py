r"""Compile time and memory of a base training step per model family and `model.remat` setting,
next to Hugging Face PyTorch's peak memory for the same step.

    nice -n 10 python bench/compile_memory.py                        # every row below
    nice -n 10 python bench/compile_memory.py --cases st5_asr --remat none,per_layer
    nice -n 10 python bench/compile_memory.py --cases st5_asr --remat none --set scan_layers=false

Rows: for each case (bench/cases.py; default the UniSpeech base pre-training step and the
SpeechT5 base ASR step, batch 2 × 4 s) our side once per `--remat` setting, then the HF side
once. Each row is one worker process of bench/step_vs_hf.py, run one after the other (a base
compile takes a core for half a minute; the machine may be shared). Columns: compile = lower +
compile of our train step (`step.make_train_step`, no persistent compilation cache), wall
seconds and in parentheses the worker's CPU seconds (XLA compiles on one thread, so on a
loaded machine the CPU figure is the one to compare);
XLA temp = the compiled step's scratch buffers (`memory_analysis().temp_size_in_bytes`); peak
RSS = the worker's peak resident memory while stepping (it also holds the HF model it converted
from: both sides import torch) and in parentheses its growth over the idle process; s/step
the median of the clean steps. Results: docs/results/compile_and_memory.md.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import platform

import workers
from cases import CASES

STEP_WORKER = str(pathlib.Path(__file__).resolve().parent / "step_vs_hf.py")
HEADER = (
    "| case | side | remat | overrides | compile s (CPU s) | XLA temp MB | peak RSS MB (+steps) "
    "| s/step median |"
)


def row(case: str, side: str, remat: str, overrides: dict, r: dict) -> str:
    """One markdown table line of a step_vs_hf worker result `r`."""
    compile_s = f"{r['compile_s']:.1f} ({r['compile_cpu_s']:.1f})" if "compile_s" in r else "–"
    temp = f"{r['xla_temp_mb']:.0f}" if "xla_temp_mb" in r else "–"
    extra = ", ".join(f"{k}={v}" for k, v in overrides.items() if k != "remat") or "–"
    return (
        f"| {case} | {side} | {remat} | {extra} | {compile_s} | {temp} "
        f"| {r['peak_rss_mb']:.0f} (+{r['step_rss_mb']:.0f}) | {r['median']:.2f} |"
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="unispeech_pretrain,st5_asr")
    p.add_argument("--remat", default="none,per_layer,dots_saveable")
    p.add_argument("--size", default="base")
    p.add_argument("--sides", default="ours,hf")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=2, help="timed steps per row")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = p.parse_args(argv)

    base = workers.parse_overrides(args.set)
    spec = dict(
        size=args.size,
        batch=2,
        seconds=4.0,
        warmup=args.warmup,
        repeats=args.steps,
        max_steps=args.steps,
        max_foreign=float("inf"),  # keep every step: this table is about memory, not speed
        threads=args.threads,
    )
    env = dict(workers.pages_env(True), JAX_ENABLE_COMPILATION_CACHE="false")
    print(
        f"{datetime.date.today()} · {platform.processor() or platform.machine()} · "
        f"size {args.size}, batch 2 × 4 s, {args.warmup} warm-up + {args.steps} steps"
    )
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for case in args.cases.split(","):
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}; known: {sorted(CASES)}")
        if "ours" in args.sides:
            for remat in args.remat.split(","):
                overrides = dict(base, remat=remat)
                r = workers.run(
                    STEP_WORKER, dict(spec, case=case, side="ours", overrides=overrides), env
                )
                print(row(case, "ours", remat, overrides, r), flush=True)
        if "hf" in args.sides:
            r = workers.run(STEP_WORKER, dict(spec, case=case, side="hf", overrides={}))
            print(row(case, "hf", "–", {}, r), flush=True)


if __name__ == "__main__":
    main()
