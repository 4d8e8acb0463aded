"""Shared fixtures: a session-wide corpus cache and a tiny eSpeak NG corpus in it."""

import pytest


@pytest.fixture(scope="session")
def tiny_corpus_env(tmp_path_factory):
    """Points $UNISPEECH_JAX_CACHE at a session temp dir (in os.environ: subprocesses see it)."""
    cache = tmp_path_factory.mktemp("unispeech_jax_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("UNISPEECH_JAX_CACHE", str(cache))
    yield cache
    patch.undo()


@pytest.fixture(scope="session")
def tiny_corpus(tiny_corpus_env):
    """Path of ensure_corpus(hours=0.02, seed=0), built once per test session."""
    from unispeech_jax.data.corpus import ensure_corpus

    return ensure_corpus(hours=0.02, seed=0)
