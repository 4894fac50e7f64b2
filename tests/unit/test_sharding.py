"""The logical-axis rules and mesh shapes (the equivalence of whole runs on
different meshes is tests/integration/test_sharding.py)."""
import jax
import pytest

from lpjax import sharding


def test_unknown_logical_axis_fails_loudly():
    mesh = sharding.make_mesh((1, 1, 1), jax.devices()[:1])
    with pytest.raises(KeyError, match="no sharding rule"):
        sharding.logical_to_spec(("embed", "bogus"), (4, 4), mesh)


def test_mesh_shape_resolves_the_rest():
    assert sharding.mesh_shape((-1, 2, 1), 8) == (4, 2, 1)
    with pytest.raises(ValueError):
        sharding.mesh_shape((3, -1, 1), 8)
