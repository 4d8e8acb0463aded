"""Every model family has the entry points of `models.family.ModelFamily` with its signatures,
names every logical axis it uses, and the default mesh rules map each of them."""

import inspect

import flax.linen as nn
import jax
import ml_collections
import pytest
from test_speecht5_model import TINY as SPEECHT5_TINY
from test_unispeech_model import tiny_cfg as unispeech_tiny

from unispeech_jax import config as config_lib
from unispeech_jax import models
from unispeech_jax.errors import ConfigError
from unispeech_jax.models.family import ModelFamily

TINY = {"unispeech": unispeech_tiny(), "speecht5": SPEECHT5_TINY}


def _entry_points():
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(ModelFamily, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("name", models.FAMILIES)
def test_family_has_every_entry_point_with_the_protocol_signature(name):
    family = models.get(name)
    for entry, protocol in _entry_points().items():
        params = list(inspect.signature(getattr(family, entry)).parameters)
        want = list(protocol.parameters)[1:]  # without self
        assert params[: len(want)] == want, (name, entry)
    assert issubclass(family.ModelArgs, models.family.FamilyArgs)
    assert family.default_config().name == name


@pytest.mark.parametrize("name", models.FAMILIES)
def test_logical_axes_cover_the_params_and_the_default_mesh_rules_map_them(name):
    family = models.get(name)
    module = family.build(TINY[name], 11)
    variables = jax.eval_shape(lambda: family.init_variables(module, jax.random.key(0), None))
    used = {
        axis
        for leaf in jax.tree.leaves(variables, is_leaf=lambda x: isinstance(x, nn.Partitioned))
        if isinstance(leaf, nn.Partitioned)
        for axis in leaf.names
        if axis
    }
    assert used <= set(family.LOGICAL_AXES)
    mapped = {rule[0] for rule in config_lib.mesh_config().rules}
    assert set(family.LOGICAL_AXES) <= mapped


def test_unknown_family_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model.name 'wav2vec'"):
        models.get("wav2vec")


def test_speecht5_refuses_more_kmeans_ids_than_classes():
    config = ml_collections.ConfigDict(
        {"data": {"km_clusters": 9}, "model": models.get("speecht5").default_config()}
    )
    config.model.num_clusters = 8
    with pytest.raises(ValueError, match="data.km_clusters=9 k-means ids do not fit"):
        models.get("speecht5").check_config(config)
    config.data.km_clusters = 8
    models.get("speecht5").check_config(config)
