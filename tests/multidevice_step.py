"""Run by test_multidevice.py in a fresh process with 8 fake CPU devices (XLA_FLAGS set
before JAX starts): train steps of a micro model on a 1-device mesh and on 8-device meshes,
same initial state and batches. Prints as JSON, per mesh: the metrics of each step, the
fullest device's bytes of parameters and of optimizer state, how far its parameters after the
last step are from the 1-device ones, and whether the checkpoint hashes of the 1-device
state are the same when it is laid out on this mesh.

    multidevice_step.py TESTS_DIR unispeech   three UniSpeech steps on every mesh of MESHES
                                              (on 2x2x2 with the convolution positional
                                              embedding, 1x8x1 with its tap-matmul kernel
                                              gradient)
    multidevice_step.py TESTS_DIR speecht5    a SpeechT5 speech step, then a text step, on
                                              data=4 x fsdp=2 and on data x fsdp x tensor=2
"""

import itertools
import json
import sys

import flax.linen as nn
import jax

sys.path.insert(0, sys.argv[1])  # the tests folder, for the micro configs
import micro  # noqa: E402
import test_train_speecht5  # noqa: E402

from unispeech_jax import checkpoint, models, optim, sharding  # noqa: E402
from unispeech_jax import step as step_lib  # noqa: E402
from unispeech_jax.data import pipeline  # noqa: E402

# (data, fsdp, tensor) sizes: data parallel, FSDP with data, pure FSDP, all three axes.
MESHES = {
    "unispeech": ((8, 1, 1), (4, 2, 1), (1, 8, 1), (2, 2, 2)),
    "speecht5": ((4, 2, 1), (2, 2, 2)),
}


def run_steps(config, devices, batches):
    """Fresh state on a mesh of `devices`, then one train step per batch → (metrics of each
    step, max bytes on a device of params, of optimizer state; the initial parameters, the
    state after the last step, its shardings)."""
    family = models.get(config.model.name)
    module = family.build(config.model, family.vocab_size(config))
    tx, lr_fn = optim.make(config.optim, config.total_steps)
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = sharding.rules(config.mesh)
    init_fn = step_lib.make_init_fn(family, module, tx, family.dummy_batch(config.data))
    state, shardings = sharding.init_sharded(init_fn, jax.random.key(0), mesh, rules)
    start = state["params"]  # the step does not donate its input: still valid after it
    param_bytes = sharding.bytes_per_device(state["params"])
    opt_bytes = sharding.bytes_per_device(state["opt_state"])
    step = jax.jit(
        step_lib.make_train_step(family, module, tx, lr_fn, config, None),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, None),
    )
    results = []
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        for batch in batches:
            state, metrics = step(state, sharding.global_batch(batch, mesh))
            results.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    return results, max(param_bytes.values()), max(opt_bytes.values()), start, state, shardings


def micro_config(family):
    """The family's micro config with an 8-way splittable batch and no dropout."""
    if family == "unispeech":
        return micro.micro_config(**{"data.batch_multiple": 8, "model.hidden_dropout": 0.0})
    dropouts = (
        "hidden_dropout",
        "attention_dropout",
        "activation_dropout",
        "positional_dropout",
        "speech_decoder_prenet_dropout",
        "speech_decoder_postnet_dropout",
    )
    return test_train_speecht5.micro_config(
        **{"data.batch_multiple": 8, **{f"model.{k}": 0.0 for k in dropouts}}
    )


def main():
    assert jax.device_count() == 8, jax.devices()
    family = sys.argv[2]
    config = micro_config(family)
    it = pipeline.make_train_iter(config.data, seed=0, process_index=0, process_count=1)
    batches = [next(it)]
    if family == "speecht5":  # one speech and one text batch, in either order
        while ("text" in batches[-1]) == ("text" in batches[0]):
            batches.append(next(it))
        batches = [batches[0], batches[-1]]
    else:  # three of one shape: one compilation per mesh
        shape = {k: v.shape for k, v in batches[0].items()}
        batches += itertools.islice(
            (b for b in it if {k: v.shape for k, v in b.items()} == shape), 2
        )
    single, param_bytes, opt_bytes, start, reference, _ = run_steps(
        config, jax.devices()[:1], batches
    )
    results = {"1": dict(metrics=single, param_bytes=param_bytes, opt_bytes=opt_bytes)}
    for mesh in MESHES[family]:
        config.mesh.shape.data, config.mesh.shape.fsdp, config.mesh.shape.tensor = mesh
        # 'auto' is the FFT positional conv on CPU at this width; GPU/TPU users get the
        # convolution, whose gradient XLA once partitioned wrongly on data x tensor meshes:
        # the three-axis mesh runs the convolution, fsdp=8 the tap-matmul kernel gradient
        # (the implementations agree to rounding, test_unispeech_model).
        if family == "unispeech":
            config.model.pos_conv_impl = {(2, 2, 2): "conv", (1, 8, 1): "taps"}.get(mesh, "auto")
        metrics, param_bytes, opt_bytes, _, state, shardings = run_steps(
            config, jax.devices(), batches
        )
        laid_out = jax.device_put(reference, shardings)  # the same values, sharded
        results["x".join(map(str, mesh))] = dict(
            metrics=metrics,
            param_bytes=param_bytes,
            opt_bytes=opt_bytes,
            params_errors=micro.params_errors(state["params"], reference["params"], start),
            same_checksums=checkpoint.array_checksums(laid_out)
            == checkpoint.array_checksums(reference),
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
