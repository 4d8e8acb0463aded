r"""Our steps vs Hugging Face PyTorch on this machine, side by side, in one table.

    python bench/step_vs_hf.py                                   # tiny and base, every case
    python bench/step_vs_hf.py --sizes tiny --cases unispeech_pretrain --repeats 3
    python bench/step_vs_hf.py --sizes base --cases ctc --variant pos_conv_impl=conv   # A/B a lever
    python bench/step_vs_hf.py --sizes base --cases ctc --variant pages=small --rounds 3

Cases (bench/cases.py): w2v2_pretrain, unispeech_pretrain, ctc, ctc_frozen, infer; SpeechT5
st5_asr (ASR training step, 60 target tokens), st5_tts (TTS training step, 60 input tokens →
250 mel frames at 4 s, x-vector), st5_greedy (ASR greedy generation of exactly 50 tokens);
sizes tiny (hidden 256, 4 layers, conv 256; SpeechT5 4 + 2 layers), base (HF defaults:
95 M; SpeechT5 12 + 6 layers × 768) and micro (the CI test's); batch 2 × 4 s at 16 kHz.
Both sides run the same weights (HF init, converted with convert/hf.py or
convert/hf_speecht5.py) on the same batch. Each side of
each case runs in its own worker process (clean threads and memory; ours first, so the HF
line can quote the same analytic FLOPs), and prints its line as soon as it finishes.

Columns: s/step median and range over clean steps (steps during which other processes used
more than --max-foreign cores are dropped; rows marked LOADED had too few clean steps and
show every step); GFLOP per step counted analytically (`unispeech.forward_flops`) and by
XLA's cost analysis; MFU = analytic FLOP/s over the machine's best float32 matmul rate
(numpy/OpenBLAS, torch, jax.jit, measured first in the same run); compile = lower + compile
of our step; peak RSS of the worker process while stepping (weights, optimizer state,
activations, libraries: both sides import torch, ours converts the HF weights) and in
parentheses its growth over the idle process before the first step; page faults = the
worker's minor page faults per step (memory it touched fresh: 4 KiB each, or 2 MiB with
transparent huge pages); XLA temp = our step's scratch buffers; recompiles = XLA compilations during the
timed steps (should be 0); time / ours = this side's median over our default side's (on an
HF line: how many times faster ours is).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import time

import workers
from cases import CASES, SIZES, make_batch

# ----------------------------------------------------------------------------------------
# Workers (one process per measurement)
# ----------------------------------------------------------------------------------------


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last `_reset_peak_rss`) of this process, MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak_rss():
    """Restarts VmHWM from the current RSS (Linux clear_refs 5), so the peak excludes set-up
    (weight conversion, compilation) and covers only the steps."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _best_rate(matmul, n: int, repeats: int = 10) -> float:
    """FLOP/s of the fastest of `repeats` calls of `matmul` (an n×n by n×n product); the
    best, not the median, so that a burst of foreign load cannot lower the ceiling."""
    matmul()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _ceiling_worker(spec: dict) -> dict:
    """float32 matmul FLOP/s of numpy (OpenBLAS), torch and jax.jit on this machine."""
    import numpy as np
    import torch

    from unispeech_jax import perf

    torch.set_num_threads(spec["threads"])
    n = 1024
    a, t = np.ones((n, n), np.float32), torch.ones(n, n)
    return {
        "numpy": _best_rate(lambda: a @ a, n),
        "torch": _best_rate(lambda: t @ t, n),
        "jax": perf.matmul_ceiling(n),
    }


def _step_worker(spec: dict) -> dict:
    """Builds one side of one case, compiles/warms it, times it; returns the row's numbers."""
    import hf_steps
    import timing
    import torch

    torch.set_num_threads(spec["threads"])
    case = CASES[spec["case"]]
    hf_model = hf_steps.build(case, spec["size"])
    cfg = hf_model.config
    batch = make_batch(
        case,
        spec["batch"],
        spec["seconds"],
        cfg.vocab_size,
        mel_bins=getattr(cfg, "num_mel_bins", 80),
        speaker_dim=getattr(cfg, "speaker_embedding_dim", 512),
    )
    row = {}
    if spec["side"].startswith("ours"):
        import our_steps

        model_cfg, module, params = our_steps.build(case, hf_model, spec["overrides"])
        vocab = cfg.vocab_size
        if case.objective == "pretrain" and case.family == "unispeech":
            vocab = hf_model.config.num_ctc_classes
        del hf_model
        row["flops"] = our_steps.analytic_flops(case, model_cfg, batch, vocab)
        step, facts = our_steps.make_step(case, model_cfg, module, params, batch)
        row.update(facts)
        from unispeech_jax import perf

        compiles_before = perf.compilations()
    else:
        step = hf_steps.make_step(case, hf_model, batch)
    _reset_peak_rss()
    idle = _rss_mb("VmRSS")
    row.update(
        timing.time_steps(
            step, spec["warmup"], spec["repeats"], spec["max_steps"], spec["max_foreign"]
        )
    )
    if spec["side"].startswith("ours"):
        row["recompiles"] = perf.compilations() - compiles_before
    row["peak_rss_mb"] = _rss_mb("VmHWM")
    row["step_rss_mb"] = row["peak_rss_mb"] - idle
    return row


# ----------------------------------------------------------------------------------------
# Table
# ----------------------------------------------------------------------------------------


def pool_rounds(rows: list[dict]) -> dict:
    """One side's worker results from several rounds → one: the kept step times pooled (median,
    range over all of them), dropped steps summed, LOADED if any round was; the other facts
    (compile time, memory, page faults, ...) from the round whose median is the middle one."""
    if len(rows) == 1:
        return rows[0]
    middle = sorted(rows, key=lambda r: r["median"])[len(rows) // 2]
    times = [t for r in rows for t in r["times"]]
    return dict(
        middle,
        times=times,
        median=statistics.median(times),
        min=min(times),
        max=max(times),
        dropped=sum(r["dropped"] for r in rows),
        loaded=any(r["loaded"] for r in rows),
        rounds=[r["median"] for r in rows],
    )


HEADER = (
    "| size | case | side | s/step median | range | steps kept (dropped) | foreign cores "
    "| GFLOP analytic | GFLOP XLA | MFU | compile s | XLA temp MB | peak RSS MB (+steps) | page faults k/step | recompiles "
    "| time / ours |"
)


def _fmt(x, spec=".2f"):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_row(
    size: str, case: str, side: str, r: dict, ceiling: float, flops, ours_median=None
) -> str:
    """One markdown table line for a worker result `r`; `ours_median` (our default side's)
    gives the last column: this side's time over ours (on an HF line, how many times faster
    ours is)."""
    mfu = flops / r["median"] / ceiling if flops else None
    speed = r["median"] / ours_median if ours_median else None
    kept = f"{len(r['times'])} ({r['dropped']})" + (" LOADED" if r["loaded"] else "")
    spread = f"{r['min']:.3f}–{r['max']:.3f}"
    if "rounds" in r:
        spread += " (round medians " + " / ".join(f"{m:.3f}" for m in r["rounds"]) + ")"
    return (
        f"| {size} | {case} | {side} | {r['median']:.3f} | {spread} | {kept} "
        f"| {r['foreign']:.2f} | {_fmt(flops and flops / 1e9, '.1f')} "
        f"| {_fmt(r.get('xla_flops') and r['xla_flops'] / 1e9, '.1f')} | {_fmt(mfu, '.1%')} "
        f"| {_fmt(r.get('compile_s'), '.1f')} | {_fmt(r.get('xla_temp_mb'), '.0f')} "
        f"| {r['peak_rss_mb']:.0f} (+{r['step_rss_mb']:.0f}) | {r['page_faults'] / 1e3:.0f} | {_fmt(r.get('recompiles'), 'd')} | {_fmt(speed, '.2f')}× |"
    )


def targets(results: dict, ceiling: float) -> list[str]:
    """The issue's targets checked against `results[(size, case, side)]`."""
    lines = []

    def ratio(size, hf_case, our_case):
        hf, ours = results.get((size, hf_case, "hf")), results.get((size, our_case, "ours"))
        return hf["median"] / ours["median"] if hf and ours else None

    for size, want in (("base", 1.3), ("tiny", 3.0)):
        r = ratio(size, "w2v2_pretrain", "unispeech_pretrain")
        if r is not None:
            lines.append(
                f"{size}: HF wav2vec2 pre-train / our UniSpeech pre-train (full loss) = {r:.2f}× "
                f"(target ≥ {want}×: {'met' if r >= want else 'MISSED'})"
            )
    for case in ("ctc", "ctc_frozen", "st5_asr", "st5_tts", "st5_greedy"):
        r = ratio("base", case, case)
        if r is not None:
            lines.append(
                f"base {case}: HF / ours = {r:.2f}× (target > 1: {'met' if r > 1 else 'MISSED'})"
            )
    ours = results.get(("base", "unispeech_pretrain", "ours"))
    if ours:
        mfu = ours["flops"] / ours["median"] / ceiling
        lines.append(
            f"base UniSpeech pre-train MFU {mfu:.1%} of the ceiling (target ≥ 70%: "
            f"{'met' if mfu >= 0.7 else 'MISSED'}); compile {ours['compile_s']:.1f} s (target ≤ 20 s: "
            f"{'met' if ours['compile_s'] <= 20 else 'MISSED'})"
        )
    recompiles = [r["recompiles"] for k, r in results.items() if k[2].startswith("ours")]
    if recompiles:
        lines.append(f"recompilations during timed steps: {sum(recompiles)} (target 0)")
    return lines


# ----------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="tiny,base")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--sides", default="ours,hf")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="clean steps wanted per side")
    p.add_argument("--max-steps", type=int, default=15, help="timed steps at most per side")
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.25,
        help="drop steps during which other processes used more cores than this",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config.model override for our side (repeatable)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also run our side with this config.model override on top of --set, as "
        "side 'ours[KEY=VALUE]' (repeatable; A/B of a speed lever in one run); "
        "pages=small|huge sets that side's malloc pages instead",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every (case, side) worker this many times, alternating sides, and pool "
        "their clean steps (the HF side drifts between runs on a shared machine)",
    )
    p.add_argument(
        "--pages",
        choices=("huge", "small"),
        default="huge",
        help="our side's malloc: transparent huge pages, as unispeech_jax.train runs "
        "(unispeech_jax/hostmem.py), or 4 KiB pages (glibc.malloc.hugetlb=0); the "
        "HF side runs in the caller's environment (huge pages slow it down)",
    )
    p.add_argument("--json", default="", help="also write every result to this file")
    p.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        result = _ceiling_worker(spec) if spec["side"] == "ceiling" else _step_worker(spec)
        workers.report(result)
        return

    common = dict(
        batch=args.batch,
        seconds=args.seconds,
        warmup=args.warmup,
        repeats=args.repeats,
        max_steps=args.max_steps,
        max_foreign=args.max_foreign,
        threads=args.threads,
        overrides=workers.parse_overrides(args.set),
    )
    ours_env = workers.pages_env(args.pages == "huge")
    ceilings = workers.run(__file__, dict(common, side="ceiling"))
    ceiling = max(ceilings.values())
    print(
        "matmul ceiling float32, 1024², best of 10: "
        + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in ceilings.items())
        + f"; MFU is against {ceiling / 1e9:.0f}",
        flush=True,
    )
    print(
        f"batch {args.batch} × {args.seconds:g} s; our overrides {common['overrides'] or 'none'}; "
        f"steps: {args.warmup} warm-up, up to {args.max_steps} timed for {args.repeats} clean "
        f"(≤ {args.max_foreign} foreign cores), {args.rounds} round(s) per side, alternating; ours with GLIBC_TUNABLES={ours_env['GLIBC_TUNABLES']}",
        flush=True,
    )
    print(HEADER, flush=True)
    variants = {f"ours[{v}]": workers.parse_overrides([v]) for v in args.variant}
    sides = args.sides.split(",")
    if "ours" in sides:  # variants run right after our default side, before HF
        sides[sides.index("ours") + 1 : sides.index("ours") + 1] = list(variants)
    results = {}
    for size in args.sizes.split(","):
        if size not in SIZES:
            raise SystemExit(f"unknown size {size!r}; one of {list(SIZES)}")
        for case in args.cases.split(","):
            if case not in CASES:
                raise SystemExit(f"unknown case {case!r}; one of {list(CASES)}")
            rounds = {side: [] for side in sides}
            for _ in range(args.rounds):
                for side in sides:
                    spec = dict(common, size=size, case=case, side=side)
                    env = ours_env if side.startswith("ours") else None
                    if side in variants:
                        overrides = dict(variants[side])
                        if "pages" in overrides:  # not a config key: our worker's malloc pages
                            env = workers.pages_env(overrides.pop("pages") == "huge")
                        spec["overrides"] = {**common["overrides"], **overrides}
                    rounds[side].append(workers.run(__file__, spec, env))
            for side in sides:
                r = pool_rounds(rounds[side])
                ours = results.get((size, case, "ours"), {})
                r.setdefault("flops", ours.get("flops"))
                results[(size, case, side)] = r
                line = format_row(
                    size,
                    case,
                    side,
                    r,
                    ceiling,
                    r["flops"],
                    ours.get("median") if side != "ours" else None,
                )
                print(line, flush=True)
    print(flush=True)
    for line in targets(results, ceiling):
        print(line, flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(
            json.dumps(
                {
                    "ceilings": ceilings,
                    "args": vars(args),
                    "results": [
                        {"size": k[0], "case": k[1], "side": k[2], **v} for k, v in results.items()
                    ],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
