"""Decoding throughput of `unispeech_jax.decoding.speecht5`: utterances/s batched vs one at a
time, for greedy, beam and joint CTC/attention ASR search and for TTS mel generation.

Command (prints a markdown table; docs/results/decoding_throughput.md has the numbers):
    python bench/decode_throughput.py [--batch 8] [--tokens 24] [--frames 160] [--beam 4]
    python bench/decode_throughput.py --per-step    # one decoder step's cost vs its rows

Model: configs/speecht5_tiny.py's (4 + 2 layers × 256, log-mel front end) with random weights,
a CTC head on the encoder, a 128-id text vocabulary. Random weights would end utterances at
arbitrary steps, so the work is fixed instead: every ASR hypothesis runs exactly --tokens
steps (the end token is forbidden until then, `min_length` = `max_length`), every TTS
utterance exactly --frames frames (threshold above r). Batched: one jitted call on --batch
utterances; one at a time: --batch calls of batch 1 (the same compiled program each). Each
timing is the median of repeated runs after a warm-up (bench/timing.py, runs taken while other
processes used more than 0.5 core are dropped).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
import timing

from unispeech_jax.decoding import beam as beam_lib
from unispeech_jax.decoding import speecht5 as st5_decoding
from unispeech_jax.models import speecht5

VOCAB = 128
SAMPLE_RATE = 16_000


def _model():
    """The speecht5_tiny model with a CTC head, random weights."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "configs", "speecht5_tiny.py")
    spec = importlib.util.spec_from_file_location("speecht5_tiny", path)
    config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config)
    model_cfg = config.get_config().model
    model_cfg.ctc_loss_weight = 0.5
    module = speecht5.build(model_cfg, VOCAB)
    return module, speecht5.init_variables(module, jax.random.key(0), unbox=True)


def _inputs(batch: int, seed: int = 0):
    """Audio of 2–4 s per utterance [B,S] + mask, 30-token sentences [B,30] + mask, speakers."""
    rng = np.random.default_rng(seed)
    seconds = rng.uniform(2.0, 4.0, batch)
    samples = int(4.0 * SAMPLE_RATE)
    audio = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
    audio_mask = np.arange(samples)[None, :] < (seconds * SAMPLE_RATE)[:, None]
    tokens = rng.integers(4, VOCAB, (batch, 30)).astype(np.int32)
    token_mask = np.ones(tokens.shape, bool)
    speaker = rng.standard_normal((batch, 512)).astype(np.float32)
    return np.where(audio_mask, audio, 0.0), audio_mask, tokens, token_mask, speaker


def _cases(module, args):
    """name → jitted fn(variables, inputs) (inputs as `_inputs` returns them, any batch)."""

    def asr(**kw):
        fn = jax.jit(
            functools.partial(
                st5_decoding.search, module, max_length=args.tokens, min_length=args.tokens, **kw
            )
        )
        return lambda v, x: fn(v, x[0], x[1])

    tts = jax.jit(
        functools.partial(
            st5_decoding.synthesize,
            module,
            max_frames=args.frames,
            threshold=module.args.reduction_factor + 1.0,
        )
    )
    return {
        "greedy": asr(),
        f"beam {args.beam}": asr(beam=args.beam),
        f"beam {args.beam} + CTC 0.3": asr(beam=args.beam, ctc_weight=0.3),
        "TTS": lambda v, x: tts(v, x[2], x[3], x[4], rng=jax.random.key(0)),
    }


def _decoder_step_ms(module, variables, inputs, rows: int) -> float:
    """Median ms of one cached greedy text-decoder step on `rows` rows (encoder output
    computed once, outside): the difference of 48- and 24-step runs, over 24."""
    a = module.args
    enc = module.apply(variables, inputs[0], inputs[1], method=speecht5.SpeechT5.encode_speech)
    reps = -(-rows // enc["hidden"].shape[0])
    hidden = jnp.tile(enc["hidden"], (reps, 1, 1))[:rows]
    valid = jnp.tile(enc["valid"], (reps, 1))[:rows]

    @functools.partial(jax.jit, static_argnums=0)
    def run(steps, variables):
        return beam_lib.greedy_search(
            st5_decoding.text_step(module, variables, hidden, valid),
            speecht5.init_cache(a, rows, steps),
            jnp.full((rows,), a.decoder_start_token_id, jnp.int32),
            max_length=steps,
            min_length=steps,
            eos_id=a.decoder_start_token_id,
            pad_id=a.pad_token_id,
        )

    med = {
        steps: timing.time_steps(
            lambda s=steps: jax.block_until_ready(run(s, variables)), 1, 5, 10, 0.5
        )["median"]
        for steps in (24, 48)
    }
    return 1000 * (med[48] - med[24]) / 24


def _measure(fn, variables, inputs, batch: int, batched: bool) -> dict:
    if batched:
        step = lambda: jax.block_until_ready(fn(variables, inputs))
    else:
        rows = [tuple(x[i : i + 1] for x in inputs) for i in range(batch)]
        step = lambda: [jax.block_until_ready(fn(variables, r)) for r in rows]
    return timing.time_steps(step, warmup=1, repeats=3, max_steps=8, max_foreign=0.5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--only", default="", help="run only the cases whose name contains this")
    parser.add_argument(
        "--per-step", action="store_true", help="instead: cost of one decoder step vs rows"
    )
    args = parser.parse_args()
    module, variables = _model()
    inputs = tuple(jnp.asarray(x) for x in _inputs(args.batch))
    print(
        f"# {datetime.date.today()} · {platform.processor() or platform.machine()} · "
        f"{os.cpu_count()} cores · jax {jax.__version__} · batch {args.batch}, "
        f"{args.tokens} tokens, {args.frames} frames"
    )
    if args.per_step:
        print("| decoder rows | ms per greedy step | ms per row-step |")
        print("| ---: | ---: | ---: |")
        for rows in (1, 8, 32):
            ms = _decoder_step_ms(module, variables, inputs, rows)
            print(f"| {rows} | {ms:.1f} | {ms / rows:.2f} |", flush=True)
        return
    print("| case | batched utt/s | one at a time utt/s | speed-up | runs dropped for load |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, fn in _cases(module, args).items():
        if args.only not in name:
            continue
        batched = _measure(fn, variables, inputs, args.batch, True)
        single = _measure(fn, variables, inputs, args.batch, False)
        b, s = args.batch / batched["median"], args.batch / single["median"]
        flag = " (loaded)" if batched["loaded"] or single["loaded"] else ""
        print(
            f"| {name} | {b:.1f} | {s:.1f} | {b / s:.1f}× | "
            f"{batched['dropped']} + {single['dropped']}{flag} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
