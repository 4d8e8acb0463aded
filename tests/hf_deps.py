"""The test suite's Hugging Face / torch requirements (pyproject's `test` extra).

The parity and speed comparisons need torch and transformers. A suite that skipped them
whenever those were missing would pass in any environment that lacks them, CI included, so a
missing one is a failure; a machine that deliberately has no torch opts out with
UNISPEECH_JAX_SKIP_HF=1 (the comparisons then show as skips).
"""

import importlib
import os

import pytest

OPT_OUT = "UNISPEECH_JAX_SKIP_HF"


def load(name: str):
    """The imported module `name`; a failure (or, opted out, a skip) when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if os.environ.get(OPT_OUT) == "1":
            pytest.skip(f"{name} is not installed and {OPT_OUT}=1", allow_module_level=True)
        pytest.fail(
            f"{name} cannot be imported ({e}): it is a test requirement, pip install -e "
            f"'.[test]'; or set {OPT_OUT}=1 to skip the Hugging Face comparisons",
            pytrace=False,
        )
