"""Run by test_multidevice.py in a fresh process with 8 fake CPU devices (XLA_FLAGS set
before JAX starts): train steps of a micro model on a 1-device mesh and on a data=4 × fsdp=2
mesh, same state and batches; prints both results and per-device bytes as JSON.

    multidevice_step.py TESTS_DIR unispeech   one UniSpeech step (test_train.micro_config)
    multidevice_step.py TESTS_DIR speecht5    a SpeechT5 speech step, then a text step
                                              (test_train_speecht5.micro_config)
"""

import json
import sys

import flax.linen as nn
import jax

sys.path.insert(0, sys.argv[1])  # the tests folder, for the micro configs
import test_train  # noqa: E402
import test_train_speecht5  # noqa: E402

from unispeech_jax import models, optim, sharding, train  # noqa: E402
from unispeech_jax.data import pipeline  # noqa: E402


def run_steps(config, devices, batches):
    """Fresh state on a mesh of `devices`, then one train step per batch: (metrics of each
    step, the largest per-device parameter bytes)."""
    family = models.get(config.model.name)
    module = family.build(config.model, family.vocab_size(config))
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
    results = []
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        for batch in batches:
            state, metrics = step(state, sharding.global_batch(batch, mesh))
            results.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    return results, max(param_bytes.values())


def micro_config(family):
    """The family's micro config with an 8-way splittable batch and no dropout."""
    if family == 'unispeech':
        return test_train.micro_config(**{'data.batch_multiple': 8, 'model.hidden_dropout': 0.0})
    dropouts = ('hidden_dropout', 'attention_dropout', 'activation_dropout',
                'positional_dropout', 'speech_decoder_prenet_dropout',
                'speech_decoder_postnet_dropout')
    return test_train_speecht5.micro_config(
        **{'data.batch_multiple': 8, **{f'model.{k}': 0.0 for k in dropouts}}
    )


def main():
    assert jax.device_count() == 8, jax.devices()
    family = sys.argv[2]
    config = micro_config(family)
    it = pipeline.make_train_iter(config.data, seed=0, process_index=0, process_count=1)
    batches = [next(it)]
    if family == 'speecht5':  # one speech and one text batch, in either order
        while ('text' in batches[-1]) == ('text' in batches[0]):
            batches.append(next(it))
        batches = [batches[0], batches[-1]]
    single, single_bytes = run_steps(config, jax.devices()[:1], batches)
    config.mesh.shape.data, config.mesh.shape.fsdp = 4, 2
    multi, multi_bytes = run_steps(config, jax.devices(), batches)
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
