"""How every SpeechT5 objective runs the model: one step key split into the flax rng streams,
and `apply` of one forward method with the sown intermediates and updated BatchNorm
statistics."""

from __future__ import annotations

import jax


def split_rngs(rng, train: bool) -> tuple[dict, jax.Array]:
    """One step key → (flax rng streams, span-mask key). Eval needs only the mask key."""
    dropout, gumbel, vq, prenet, mask = jax.random.split(rng, 5)
    rngs = {"dropout": dropout, "gumbel": gumbel, "vq": vq, "prenet": prenet}
    return (rngs if train else {}), mask


def apply_forward(module, params, model_state, forward, rngs, train: bool):
    """`module.apply` of the method `forward` → (its outputs, the sown 'intermediates',
    model_state with the BatchNorm statistics that a training forward updated)."""
    mutable = ["intermediates", "batch_stats"] if train else ["intermediates"]
    out, state = module.apply(
        {"params": params, **model_state}, method=forward, rngs=rngs, mutable=mutable
    )
    if train and "batch_stats" in state:
        model_state = {**model_state, "batch_stats": state["batch_stats"]}
    return out, state.get("intermediates", {}), model_state  # none sown without a decoder
