"""The restricted score-pickle loader: plain float lists in, everything else out."""

import os
import pickle
import pickletools

import numpy as np
import pytest

from lpjax.scoring.store import load_reference_scores, load_score_pickle


def _write(path, obj, protocol=pickle.HIGHEST_PROTOCOL):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_loads_list_and_tuple_of_numbers(tmp_path, protocol):
    values = [12.5, 1.0, 3, 7.25]
    out = load_score_pickle(_write(tmp_path / "s.pkl", values, protocol))
    assert out.dtype == np.float64
    assert out.tolist() == [12.5, 1.0, 3.0, 7.25]
    assert load_score_pickle(_write(tmp_path / "t.pkl", tuple(values), protocol)).tolist() == out.tolist()


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_refuses_code_execution_pickle(tmp_path):
    marker = tmp_path / "PWNED"
    path = _write(tmp_path / "evil.pkl", [1.0, _Exploit(marker)], protocol=2)
    # Make sure the payload really reaches for os.system (posix.system), so
    # the refusal below is not vacuous.
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(path.read_bytes())]
    assert any(name == "GLOBAL" and "system" in str(arg) for name, arg in ops)
    with pytest.raises(ValueError, match=r"evil\.pkl.*forbidden"):
        load_score_pickle(path)
    assert not marker.exists()


def test_refuses_numpy_array_pickle(tmp_path):
    # Needs numpy globals to rebuild, so it is not a plain list.
    with pytest.raises(ValueError, match="forbidden"):
        load_score_pickle(_write(tmp_path / "a.pkl", np.arange(3.0)))


@pytest.mark.parametrize(
    "obj, found",
    [
        ({"a": 1.0}, "dict"),
        (["1.0", "2.0"], "str"),
        ([1.0, True], "bool"),
        ([[1.0], [2.0]], "list"),
        ([1.0, None], "NoneType"),
        (3.5, "float"),
    ],
)
def test_refuses_wrong_structure_naming_file_and_content(tmp_path, obj, found):
    path = _write(tmp_path / "bad.pkl", obj)
    with pytest.raises(ValueError) as info:
        load_score_pickle(path)
    assert str(path) in str(info.value) and found in str(info.value)


def test_refuses_truncated_file(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps([1.0, 2.0, 3.0])[:-5])
    with pytest.raises(ValueError, match="cut.pkl"):
        load_score_pickle(path)


def test_load_reference_scores_stacks_epochs_in_order(tmp_path):
    _write(tmp_path / "epoch-pre.pkl", [9.0, 4.0])
    _write(tmp_path / "epoch-1.pkl", [5.0, 3.0])
    _write(tmp_path / "epoch-2.pkl", [2.0, 2.5])
    _write(tmp_path / "epoch-4.pkl", [0.0, 0.0])  # not contiguous: ignored
    out = load_reference_scores(tmp_path)
    assert out.shape == (3, 2)
    assert out.tolist() == [[9.0, 4.0], [5.0, 3.0], [2.0, 2.5]]


def test_load_reference_scores_errors(tmp_path):
    with pytest.raises(ValueError, match="epoch-pre"):
        load_reference_scores(tmp_path)
    _write(tmp_path / "epoch-pre.pkl", [9.0, 4.0])
    _write(tmp_path / "epoch-1.pkl", [5.0])
    with pytest.raises(ValueError, match="differ in length"):
        load_reference_scores(tmp_path)
