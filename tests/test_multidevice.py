"""A train step on a data=4 × fsdp=2 mesh of 8 fake CPU devices equals the 1-device step."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def test_fsdp_data_mesh_matches_single_device(tiny_corpus_env):
    env = dict(
        os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu'
    )
    out = subprocess.run(
        [sys.executable, str(HERE / 'multidevice_step.py'), str(HERE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    single, multi = result['single'], result['multi']
    for key in ('loss', 'grad_norm', 'contrastive', 'ctc'):
        np.testing.assert_allclose(multi[key], single[key], rtol=2e-5, err_msg=key)
    # FSDP splits the parameters: the fullest device holds well under the whole model.
    assert result['multi_bytes'] < 0.75 * result['single_bytes'], result
