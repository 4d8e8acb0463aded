"""Run by test_multidevice.py in a fresh process with 8 fake CPU devices (XLA_FLAGS set
before JAX starts): one train step of the micro model on a 1-device mesh and on each mesh of
MESHES, same initial state and batch; prints their metrics and the fullest device's bytes of
parameters and optimizer state as JSON."""

import json
import sys

import flax.linen as nn
import jax

sys.path.insert(0, sys.argv[1])  # the tests folder, for micro.micro_config
from micro import micro_config  # noqa: E402

from unispeech_jax import models, optim, sharding, train  # noqa: E402
from unispeech_jax.data import pipeline  # noqa: E402

# (data, fsdp, tensor) sizes: data parallel, FSDP with data, pure FSDP, all three axes.
MESHES = ((8, 1, 1), (4, 2, 1), (1, 8, 1), (2, 2, 2))


def one_step(config, devices, batch):
    """→ (metrics of one step, max bytes on a device of params, of optimizer state)."""
    family = models.get(config.model.name)
    module = family.build(config.model, len(pipeline.vocab(config.data)))
    tx, lr_fn = optim.make(config.optim, config.total_steps)
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = sharding.rules(config.mesh)
    init_fn = train.make_init_fn(family, module, tx, family.dummy_batch(config.data))
    state, shardings = sharding.init_sharded(init_fn, jax.random.key(0), mesh, rules)
    param_bytes = sharding.bytes_per_device(state['params'])
    opt_bytes = sharding.bytes_per_device(state['opt_state'])
    step = jax.jit(
        train.make_train_step(family, module, tx, lr_fn, config, None),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, None),
    )
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        _, metrics = step(state, sharding.global_batch(batch, mesh))
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    return metrics, max(param_bytes.values()), max(opt_bytes.values())


def main():
    assert jax.device_count() == 8, jax.devices()
    config = micro_config(**{'data.batch_multiple': 8, 'model.hidden_dropout': 0.0})
    it = pipeline.make_train_iter(config.data, seed=0, process_index=0, process_count=1)
    batch = next(it)
    results = {'1': one_step(config, jax.devices()[:1], batch)}
    for shape in MESHES:
        config.mesh.shape.data, config.mesh.shape.fsdp, config.mesh.shape.tensor = shape
        results['x'.join(map(str, shape))] = one_step(config, jax.devices(), batch)
    print(json.dumps(results))


if __name__ == '__main__':
    main()
