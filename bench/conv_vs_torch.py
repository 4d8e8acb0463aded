r"""The waveform conv stack layer by layer: XLA vs torch, forward, input gradient, kernel gradient.

    python bench/conv_vs_torch.py --channels 256    # tiny; 512 is base

Each convolution of the wav2vec 2.0 / UniSpeech feature encoder (kernels 10,3,3,3,3,2,2,
strides 5,2,2,2,2,2,2, no bias; batch 2 × 4 s at 16 kHz) is timed alone, in one process,
alternating sides, median of --repeats clean calls (bench/timing.py: calls under foreign CPU
load are dropped) after two warm-up calls: ours is jax.jit of
`lax.conv_general_dilated` in our NWC layout and of its two VJPs; torch's is `conv1d` and
`aten.convolution_backward` (oneDNN), `torch.set_num_threads(--threads)`. The first layer has
no input gradient (its input is the waveform). This is where a tiny step's time goes: the
conv stack is 73 % of its FLOPs (docs/results/step_vs_hf.md).
"""

from __future__ import annotations

import argparse

import numpy as np
import timing

from unispeech_jax.models.unispeech import ModelArgs


def _median_ms(fn, repeats: int) -> float:
    return (
        1e3
        * timing.time_steps(fn, warmup=2, repeats=repeats, max_steps=3 * repeats, max_foreign=0.25)[
            "median"
        ]
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--samples", type=int, default=64000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import jax
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(
        "| layer | kernel / stride | channels | out frames | GFLOP fwd | XLA fwd ms | XLA dx ms | XLA dw ms "
        "| torch fwd ms | torch dx ms | torch dw ms | XLA dw GFLOP/s | torch dw GFLOP/s |"
    )
    print("|" + "---|" * 13)
    length, c_in = args.samples, 1
    totals = np.zeros(2)
    geometry = ModelArgs()  # the paper's conv stack: kernels 10,3,3,3,3,2,2, strides 5,2,...
    for i, (k, s) in enumerate(zip(geometry.conv_kernel, geometry.conv_stride)):
        frames = (length - k) // s + 1
        x = rng.standard_normal((args.batch, length, c_in)).astype(np.float32)
        w = (rng.standard_normal((k, c_in, args.channels)) / np.sqrt(k * c_in)).astype(np.float32)
        dy = rng.standard_normal((args.batch, frames, args.channels)).astype(np.float32)

        def conv(x, w, s=s):
            return jax.lax.conv_general_dilated(
                x, w, (s,), "VALID", dimension_numbers=("NWC", "WIO", "NWC")
            )

        fwd = jax.jit(conv)
        dx = jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0])
        dw = jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0])
        xj, wj, dyj = (jax.device_put(a) for a in (x, w, dy))
        ours = [
            _median_ms(lambda: fwd(xj, wj).block_until_ready(), args.repeats),
            _median_ms(lambda: dx(xj, wj, dyj).block_until_ready(), args.repeats)
            if i
            else float("nan"),
            _median_ms(lambda: dw(xj, wj, dyj).block_until_ready(), args.repeats),
        ]

        xt = torch.from_numpy(x.transpose(0, 2, 1).copy())
        wt = torch.from_numpy(w.transpose(2, 1, 0).copy())
        dyt = torch.from_numpy(dy.transpose(0, 2, 1).copy())

        def backward(mask, s=s):
            return torch.ops.aten.convolution_backward(
                dyt, xt, wt, None, (s,), (0,), (1,), False, (0,), 1, mask
            )

        with torch.no_grad():
            theirs = [
                _median_ms(lambda: torch.nn.functional.conv1d(xt, wt, stride=s), args.repeats),
                _median_ms(lambda: backward((True, False, False)), args.repeats)
                if i
                else float("nan"),
                _median_ms(lambda: backward((False, True, False)), args.repeats),
            ]
        gflop = 2 * args.batch * frames * k * c_in * args.channels / 1e9
        totals += [np.nansum(ours), np.nansum(theirs)]
        cells = " | ".join("–" if np.isnan(v) else f"{v:.1f}" for v in ours + theirs)
        print(
            f"| {i} | {k} / {s} | {c_in} → {args.channels} | {frames} | {gflop:.2f} | {cells} "
            f"| {gflop / ours[2] * 1e3:.0f} | {gflop / theirs[2] * 1e3:.0f} |",
            flush=True,
        )
        length, c_in = frames, args.channels
    print(
        f"\nall layers, forward + both gradients: XLA {totals[0]:.0f} ms, torch {totals[1]:.0f} ms"
    )


if __name__ == "__main__":
    main()
