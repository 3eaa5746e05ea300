"""Data files are not trusted: a CIFAR-10 batch cannot run code (issue #12).

Each payload would run on a plain ``pickle.load``: the tests check that the
loader refuses it with a :class:`DataError` naming the file *and* that the
payload's side effect (a marker file) never happens.
"""

import os
import pickle
import pickletools

import numpy as np
import pytest

from bench import data
from bench.data import DataError


class _System:
    """Unpickles to ``os.system(cmd)``."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


def _write_batches(root, payload_in=None, payload=None, protocol=2):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"batch_label": b"x", b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [0, 9], b"filenames": [b"a.png", b"b.png"]}
        if name == payload_in:
            d[b"labels"] = payload
        with open(root / name, "wb") as f:
            pickle.dump(d, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_os_system_payload_is_refused_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    _write_batches(tmp_path, "data_batch_3", _System(f"touch {marker}"), protocol)
    with pytest.raises(DataError, match=r"data_batch_3: refused to load: the pickle names (posix|os|nt)\.system"):
        data.cifar10(root=str(tmp_path))
    assert not marker.exists()


def test_eval_payload_inside_a_numpy_object_array_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = np.array([_Eval(f"open({str(marker)!r}, 'w')")], dtype=object)
    _write_batches(tmp_path, "test_batch", payload, 2)
    with pytest.raises(DataError, match=r"test_batch: refused to load: the pickle names (builtins|__builtin__)\.eval"):
        data.cifar10(root=str(tmp_path))
    assert not marker.exists()


def test_hand_written_global_opcode_is_refused(tmp_path):
    # protocol-0 text pickle calling subprocess.check_call without any Python object behind it
    marker = tmp_path / "pwned"
    raw = f"csubprocess\ncheck_call\n((S'touch'\nS'{marker}'\nltR.".encode()
    pickletools.dis(raw, out=open(os.devnull, "w"))  # a well-formed pickle
    with pytest.raises(DataError, match="refused to load: the pickle names subprocess.check_call"):
        data.safe_unpickle(raw, "batch")
    assert not marker.exists()


def test_plain_data_roundtrips_through_the_restricted_unpickler():
    obj = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2], b"x": (1.5, None, True, "s"), b"n": np.int64(3)}
    for protocol in (0, 2, 4, 5):
        back = data.safe_unpickle(pickle.dumps(obj, protocol=protocol), "p")
        assert np.array_equal(back[b"data"], obj[b"data"]) and back["labels"] == [1, 2] and back[b"x"] == obj[b"x"] and back[b"n"] == 3


def test_harmless_but_unexpected_classes_are_refused_too():
    import collections

    raw = pickle.dumps(collections.OrderedDict(a=1), protocol=2)
    with pytest.raises(DataError, match="collections.OrderedDict"):
        data.safe_unpickle(raw, "p")


def test_shared_references_are_checked_once_not_exponentially():
    # a few hundred bytes of pickle that reference one list 10^12 times through memo lookups
    a = [1]
    for _ in range(4):
        a = [a] * 1000
    raw = pickle.dumps({b"data": a}, protocol=2)
    assert len(raw) < 20000
    back = data.safe_unpickle(raw, "p")  # returns promptly (checking every reference would take days)
    assert back[b"data"][999][999][999][999] == [1]


@pytest.mark.parametrize("content", [b"", b"\x80\x02}q\x00(", b"not a pickle at all"])
def test_truncated_or_garbled_batches_are_data_errors(tmp_path, content):
    (tmp_path / "data_batch_1").write_bytes(content)
    with pytest.raises(DataError, match="data_batch_1"):
        data.read_cifar_batch(tmp_path / "data_batch_1")


def test_real_layout_python2_batches_still_load(tmp_path):
    _write_batches(tmp_path, protocol=2)
    d = data.cifar10(root=str(tmp_path))
    assert d.train_x.shape == (10, 3, 32, 32) and d.test_y.tolist() == [0, 9]
    assert d.info.captions[0] == "a photo of a airplane"
