"""The train step: the state a run starts from and one update, sharded and jitted.

`build(config, mesh)` is what `unispeech_jax.train` runs and `unispeech_jax.aot` compiles for
TPU topologies ahead of time: the model of `config.model`, the optimizer of `config.optim`, the
state's shardings from the logical axis rules of `config.mesh`, and `jit(step)` with the state
donated. `make_init_fn` and `make_train_step` are the unjitted pieces (tests, benchmarks).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from unispeech_jax import models, optim, sharding


def make_init_fn(family, module, tx, batch):
    """init(rng) -> state dict with logically-partitioned (boxed) params; a family with
    non-trainable variables (SpeechT5's BatchNorm 'batch_stats') adds them as 'model_state'."""

    def init(rng):
        variables = dict(models.init_variables(family, module, rng, batch))
        params = variables.pop("params")
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": tx.init(params),
            "nonfinite": jnp.zeros((), jnp.int32),
        }
        if variables:  # only then: checkpoints of stateless families keep their layout
            state["model_state"] = variables
        return state

    return init


def _split_micro(batch, n):
    """[B, ...] → [n, B/n, ...] taking every n-th example, so each micro-batch stays spread
    over all devices (each device holds a contiguous block of the batch)."""
    return jax.tree.map(
        lambda x: jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1), batch
    )


def make_train_step(family, module, tx, lr_fn, config, frozen):
    """Returns step(state, batch) -> (state, metrics), to be jitted with shardings."""
    base_key = jax.random.key(config.seed)
    accum = config.optim.grad_accum
    grad_fn = jax.value_and_grad(functools.partial(models.loss_fn, family, module), has_aux=True)

    def step_fn(state, batch):
        step = state["step"]
        rng = jax.random.fold_in(base_key, step)
        params = state["params"]
        model_state = state.get("model_state", {})
        if accum == 1:
            (loss, (metrics, model_state)), grads = grad_fn(
                params, model_state, batch, rng, step, True
            )
        else:
            # Micro-batches run one after the other: model_state (BatchNorm) is threaded through.
            def micro(carry, xs):
                sums, ms = carry
                i, mb = xs
                (loss_i, (m, ms)), g = grad_fn(
                    params, ms, mb, jax.random.fold_in(rng, i), step, True
                )
                return (jax.tree.map(jnp.add, sums, (loss_i, m, g)), ms), None

            zeros = jax.tree.map(
                jnp.zeros_like,
                jax.eval_shape(
                    lambda: grad_fn(
                        params,
                        model_state,
                        jax.tree.map(lambda x: x[: x.shape[0] // accum], batch),
                        rng,
                        step,
                        True,
                    )
                ),
            )
            zeros = (zeros[0][0], zeros[0][1][0], zeros[1])
            ((loss, metrics, grads), model_state), _ = jax.lax.scan(
                micro, (zeros, model_state), (jnp.arange(accum), _split_micro(batch, accum))
            )
            loss, metrics, grads = jax.tree.map(lambda x: x / accum, (loss, metrics, grads))

        if frozen is not None:
            keep = step >= config.optim.freeze_steps
            grads = jax.tree.map(lambda g, f: jnp.where(f & ~keep, 0.0, g), grads, frozen)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        if frozen is not None:
            updates = jax.tree.map(lambda u, f: jnp.where(f & ~keep, 0.0, u), updates, frozen)
        new_params = optax.apply_updates(params, updates)

        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        if config.skip_nonfinite:
            # Keep the old state for a bad step; the counter tells the host it happened.
            new_params, opt_state, model_state = jax.tree.map(
                lambda n, o: jnp.where(finite, n, o),
                (new_params, opt_state, model_state),
                (params, state["opt_state"], state.get("model_state", {})),
            )
        metrics = dict(
            metrics,
            loss=loss,
            grad_norm=grad_norm,
            lr=lr_fn(step),
            param_norm=optax.tree.norm(new_params),
        )
        new_state = {
            "step": step + 1,
            "params": new_params,
            "opt_state": opt_state,
            "nonfinite": state["nonfinite"] + (~finite).astype(jnp.int32),
        }
        if "model_state" in state:
            new_state["model_state"] = model_state
        return new_state, metrics

    return step_fn


@dataclasses.dataclass(frozen=True)
class Built:
    """The model and the sharded, jitted train step of a config on a mesh (`build`)."""

    family: Any  # the models/ module of config.model.name
    module: nn.Module
    rules: tuple  # logical → mesh axis rules (flax)
    init_fn: Callable  # rng -> boxed state (make_init_fn)
    abstract_state: Any  # ShapeDtypeStructs carrying their shardings
    state_shardings: Any
    train_step: Any  # jit(step)(state, global batch) -> (state, metrics); donates the state


def build(config, mesh) -> Built:
    """Everything the train loop compiles, with nothing computed: the trainer materialises
    the state and runs the step, unispeech_jax.aot lowers the same step for a TPU topology.

    Under `jax.set_mesh(mesh)` and `nn.logical_axis_rules(built.rules)` the step is called
    with a batch laid out by `sharding.batch_sharding(mesh)` (every array [B, ...] global).
    """
    family = models.get(config.model.name)
    module = family.build(config.model, family.vocab_size(config))
    tx, lr_fn = optim.make(config.optim, config.total_steps)
    rules = sharding.rules(config.mesh)
    # One example: the state's shapes do not depend on the batch size, and a global batch
    # of a large slice would be a constant of the init's program.
    example = jax.tree.map(lambda x: x[:1], family.dummy_batch(config.data))
    init_fn = make_init_fn(family, module, tx, example)
    abstract, shardings = sharding.abstract_state(init_fn, jax.random.key(config.seed), mesh, rules)
    frozen = (
        optim.frozen_mask(abstract["params"], config.optim.freeze_regex)
        if config.optim.freeze_steps > 0 and config.optim.freeze_regex
        else None
    )
    train_step = jax.jit(
        make_train_step(family, module, tx, lr_fn, config, frozen),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, None),
        donate_argnums=(0,),
    )
    return Built(family, module, rules, init_fn, abstract, shardings, train_step)
