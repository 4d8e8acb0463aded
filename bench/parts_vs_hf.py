r"""Where a training step's time goes: the parts of a UniSpeech training step, ours vs Hugging
Face, each timed on its own.

    python bench/parts_vs_hf.py --size base [--case ctc] [--set key=value ...]

Parts (batch 2 × 4 s; both sides hold the same HF-initialised weights, converted for ours; no
dropout, so that both sides do the same arithmetic):
  conv      the waveform conv feature encoder, forward + backward (weight gradients)
  encoder   feature projection, positional conv and the Transformer layers, forward + backward,
            from the conv features
  optimizer global-norm clipping + AdamW on every parameter (memory-bound: it reads and writes
            ~7 floats per parameter; the table gives GB/s for it)
  step      the whole training step of `--case`, as bench/step_vs_hf.py times it
Backward passes are driven by a fixed random cotangent. GFLOP counts the analytic forward × 3
(forward + backward); GFLOP/s is against each side's own median. Steps with foreign CPU load
above --max-foreign cores are dropped, as in step_vs_hf.py.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import workers
from cases import CASES, make_batch

PARTS = ("conv", "encoder", "optimizer", "step")


def _our_parts(case, size: str, batch: dict, overrides: dict) -> dict:
    """{part: no-argument callable that runs it once and blocks}, plus the parts' shapes."""
    import hf_steps
    import jax
    import jax.numpy as jnp
    import optax
    import our_steps

    from unispeech_jax import config as config_lib
    from unispeech_jax import optim
    from unispeech_jax.models import layers

    hf_model = hf_steps.build(case, size)
    model_cfg, module, params = our_steps.build(case, hf_model, overrides)
    del hf_model
    a = module.args
    audio = jnp.asarray(batch["audio"])
    valid = layers.frame_validity(jnp.asarray(batch["audio_mask"]), a.conv_kernel, a.conv_stride)

    def conv_fwd(conv_params, audio):
        return module.apply(
            {"params": {**params, "feature_extractor": conv_params}},
            audio,
            method=lambda m, x: layers.run_feature_encoder(m.feature_extractor, x, valid),
        )

    feats = jax.jit(conv_fwd)(params["feature_extractor"], audio)
    rng = np.random.default_rng(1)
    conv_cot = jnp.asarray(rng.standard_normal(feats.shape).astype(np.float32))

    encoder_keys = ("feature_projection", "encoder")

    def encoder_fwd(sub, feats):
        def run(m, x):
            hidden, _ = m.feature_projection(x, deterministic=True)
            return m.encoder(hidden, valid, deterministic=True)

        return module.apply({"params": {**params, **sub}}, feats, method=run)

    sub = {k: params[k] for k in encoder_keys}
    hidden_cot = jnp.asarray(
        rng.standard_normal(jax.eval_shape(encoder_fwd, sub, feats).shape).astype(np.float32)
    )
    conv_grad = jax.jit(jax.grad(lambda p, x: jnp.vdot(conv_fwd(p, x), conv_cot)))
    encoder_grad = jax.jit(jax.grad(lambda p, x: jnp.vdot(encoder_fwd(p, x), hidden_cot)))

    config = config_lib.defaults()
    tx, _ = optim.make(config.optim, config.total_steps)
    opt = {"params": params, "state": tx.init(params)}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)

    def update(opt, grads):
        updates, state = tx.update(grads, opt["state"], opt["params"])
        return {"params": optax.apply_updates(opt["params"], updates), "state": state}

    update = jax.jit(update, donate_argnums=(0,))
    holder = [opt]

    def optimizer():
        holder[0] = update(holder[0], grads)
        jax.block_until_ready(holder[0])

    step, _ = our_steps.make_step(case, model_cfg, module, params, batch)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    return {
        "conv": lambda: jax.block_until_ready(conv_grad(params["feature_extractor"], audio)),
        "encoder": lambda: jax.block_until_ready(encoder_grad(sub, feats)),
        "optimizer": optimizer,
        "step": step,
    }, {"frames": int(feats.shape[1]), "params": int(n_params), "args": a}


def _hf_parts(case, size: str, batch: dict) -> dict:
    """The same parts on the HF model, as `_our_parts`."""
    import hf_steps
    import torch

    model = hf_steps.build(case, size)
    model.eval()  # no dropout; gradients still flow
    backbone = model.unispeech if hasattr(model, "unispeech") else model.wav2vec2
    audio = torch.from_numpy(batch["audio"])
    with torch.no_grad():
        feats = backbone.feature_extractor(audio)  # [B, C, T]
    rng = np.random.default_rng(1)
    conv_cot = torch.from_numpy(rng.standard_normal(tuple(feats.shape)).astype(np.float32))
    feats_t = feats.transpose(1, 2).contiguous()
    with torch.no_grad():
        hidden = backbone.encoder(backbone.feature_projection(feats_t)[0]).last_hidden_state
    hidden_cot = torch.from_numpy(rng.standard_normal(tuple(hidden.shape)).astype(np.float32))

    def conv():
        backbone.feature_extractor(audio).backward(conv_cot)

    def encoder():
        backbone.encoder(backbone.feature_projection(feats_t)[0]).last_hidden_state.backward(
            hidden_cot
        )

    params, opt = hf_steps.optimizer(model)
    for p in params:
        p.grad = torch.full_like(p, 1e-3)

    def optimizer():
        torch.nn.utils.clip_grad_norm_(params, hf_steps.CLIP)
        opt.step()

    step_model = hf_steps.build(case, size)  # a fresh copy: the parts above changed the weights
    return {
        "conv": conv,
        "encoder": encoder,
        "optimizer": optimizer,
        "step": hf_steps.make_step(case, step_model, batch),
    }


def _worker(spec: dict) -> dict:
    import hf_steps
    import timing
    import torch

    torch.set_num_threads(spec["threads"])
    case = CASES[spec["case"]]
    cfg = hf_steps.hf_config(case, spec["size"])
    batch = make_batch(case, 2, 4.0, cfg.vocab_size)
    if spec["side"] == "ours":
        parts, facts = _our_parts(case, spec["size"], batch, spec["overrides"])
        a = facts.pop("args")
        from unispeech_jax.models import layers

        b, s = batch["audio"].shape
        facts["gflop"] = {
            "conv": 3
            * layers.conv_encoder_flops(b, s, a.conv_dim, a.conv_kernel, a.conv_stride)
            / 1e9,
            "encoder": 3
            * (
                layers.transformer_encoder_flops(
                    b,
                    facts["frames"],
                    a.hidden_size,
                    a.intermediate_size,
                    a.num_layers,
                    a.num_conv_pos_embeddings,
                    a.num_conv_pos_embedding_groups,
                )
                + 2.0 * b * facts["frames"] * a.conv_dim[-1] * a.hidden_size
            )
            / 1e9,
        }
    else:
        parts, facts = _hf_parts(case, spec["size"], batch), {}
    result = {"facts": facts}
    for name in PARTS:
        result[name] = timing.time_steps(
            parts[name], spec["warmup"], spec["repeats"], spec["max_steps"], spec["max_foreign"]
        )
    return result


def _table(size: str, case: str, ours: dict, hf: dict) -> list[str]:
    facts = ours["facts"]
    lines = [
        f"{size} {case}: {facts['params'] / 1e6:.1f} M parameters, {facts['frames']} frames per utterance",
        "| part | ours s | HF s | HF / ours | GFLOP | ours GFLOP/s | HF GFLOP/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in PARTS:
        o, h = ours[name], hf[name]
        flag = " (LOADED)" if o["loaded"] or h["loaded"] else ""
        gflop = facts["gflop"].get(name)
        if name == "optimizer":  # bytes moved, not FLOPs: ~7 float32 reads/writes per parameter
            gb = 7 * 4 * facts["params"] / 1e9
            rates = f"| {gb:.1f} GB | {gb / o['median']:.1f} GB/s | {gb / h['median']:.1f} GB/s |"
        elif gflop:
            rates = f"| {gflop:.1f} | {gflop / o['median']:.0f} | {gflop / h['median']:.0f} |"
        else:
            rates = "| – | – | – |"
        lines.append(
            f"| {name}{flag} | {o['median']:.3f} ({o['min']:.3f}–{o['max']:.3f}) "
            f"| {h['median']:.3f} ({h['min']:.3f}–{h['max']:.3f}) | {h['median'] / o['median']:.2f}× "
            + rates
        )
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="base")
    p.add_argument(
        "--case",
        default="ctc",
        choices=[k for k, c in CASES.items() if c.train and c.family != "speecht5"],
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=15)
    p.add_argument("--max-foreign", type=float, default=0.25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config.model override for our side (value parsed as JSON)",
    )
    p.add_argument(
        "--pages",
        choices=("huge", "small"),
        default="huge",
        help="our side's malloc pages, as in step_vs_hf.py",
    )
    p.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        workers.report(_worker(json.loads(args.worker)))
        return
    overrides = workers.parse_overrides(args.set)
    spec = dict(
        size=args.size,
        case=args.case,
        warmup=args.warmup,
        repeats=args.repeats,
        max_steps=args.max_steps,
        max_foreign=args.max_foreign,
        threads=args.threads,
        overrides=overrides,
    )
    ours = workers.run(__file__, dict(spec, side="ours"), workers.pages_env(args.pages == "huge"))
    hf = workers.run(__file__, dict(spec, side="hf"))
    print("\n".join(_table(args.size, args.case, ours, hf)))


if __name__ == "__main__":
    main()
