"""Run by test_multidevice.py in a fresh process with 8 fake CPU devices (XLA_FLAGS set
before JAX starts): one train step of the micro model on a 1-device mesh and on a
data=4 × fsdp=2 mesh, same state and batch; prints both results and per-device bytes as JSON."""

import json
import sys

import flax.linen as nn
import jax

sys.path.insert(0, sys.argv[1])  # the tests folder, for micro.micro_config
from micro import micro_config  # noqa: E402

from unispeech_jax import models, optim, sharding, train  # noqa: E402
from unispeech_jax.data import pipeline  # noqa: E402


def one_step(config, devices, batch):
    family = models.get(config.model.name)
    module = family.build(config.model, len(pipeline.vocab(config.data)))
    tx, lr_fn = optim.make(config.optim, config.total_steps)
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = sharding.rules(config.mesh)
    init_fn = train.make_init_fn(family, module, tx, family.dummy_batch(config.data))
    state, shardings = sharding.init_sharded(init_fn, jax.random.key(0), mesh, rules)
    param_bytes = sharding.bytes_per_device(state['params'])
    step = jax.jit(
        train.make_train_step(family, module, tx, lr_fn, config, None),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, None),
    )
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        _, metrics = step(state, sharding.global_batch(batch, mesh))
    return {k: float(v) for k, v in jax.device_get(metrics).items()}, max(param_bytes.values())


def main():
    assert jax.device_count() == 8, jax.devices()
    config = micro_config(**{'data.batch_multiple': 8, 'model.hidden_dropout': 0.0})
    it = pipeline.make_train_iter(config.data, seed=0, process_index=0, process_count=1)
    batch = next(it)
    single, single_bytes = one_step(config, jax.devices()[:1], batch)
    config.mesh.shape.data, config.mesh.shape.fsdp = 4, 2
    multi, multi_bytes = one_step(config, jax.devices(), batch)
    print(
        json.dumps(
            {
                'single': single,
                'multi': multi,
                'single_bytes': single_bytes,
                'multi_bytes': multi_bytes,
            }
        )
    )


if __name__ == '__main__':
    main()
