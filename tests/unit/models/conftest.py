import pytest

from tests.unit.models.hf_cases import make_checkpoint


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """name -> (checkpoint dir, transformers reference model), built once per session."""
    built = {}

    def get(name: str):
        pytest.importorskip("torch", reason="the reference is transformers' PyTorch model")
        if name not in built:
            path = str(tmp_path_factory.mktemp(name))
            built[name] = (path, make_checkpoint(name, path))
        return built[name]

    return get
