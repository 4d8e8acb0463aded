"""Train steps on a data=4 × fsdp=2 mesh of 8 fake CPU devices equal the 1-device steps."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def run_on_8_devices(family):
    env = dict(
        os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu'
    )
    out = subprocess.run(
        [sys.executable, str(HERE / 'multidevice_step.py'), str(HERE), family],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fsdp_data_mesh_matches_single_device(tiny_corpus_env):
    result = run_on_8_devices('unispeech')
    (single,), (multi,) = result['single'], result['multi']
    for key in ('loss', 'grad_norm', 'contrastive', 'ctc'):
        np.testing.assert_allclose(multi[key], single[key], rtol=2e-5, err_msg=key)
    # FSDP splits the parameters: the fullest device holds well under the whole model.
    assert result['multi_bytes'] < 0.75 * result['single_bytes'], result


def test_speecht5_joint_steps_on_fsdp_data_mesh_match_single_device(tiny_corpus_env):
    """A speech step and a text step, the second from the state the first left."""
    result = run_on_8_devices('speecht5')
    for single, multi in zip(result['single'], result['multi']):
        kind = 'text' if 'text/mle' in single else 'speech'
        parts = ('mle', 'diversity') if kind == 'text' else ('mlm', 'l1', 'bce', 'diversity')
        for key in ('loss', 'grad_norm', *(f'{kind}/{p}' for p in parts)):
            np.testing.assert_allclose(multi[key], single[key], rtol=2e-5, err_msg=key)
    assert result['multi_bytes'] < 0.75 * result['single_bytes'], result
