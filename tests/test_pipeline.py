"""The artifact cache (genbench.cache) and the staged pipeline (bench.pipeline)."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
import torch

from genbench.cache import (
    ArtifactError,
    Cache,
    atomic_write,
    content_hash,
    file_hash,
    read_artifact,
    write_artifact,
)


def test_file_hash_is_sha256_of_bytes(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"hello genbench")
    assert file_hash(p, 64) == hashlib.sha256(b"hello genbench").hexdigest()
    assert file_hash(p) == hashlib.sha256(b"hello genbench").hexdigest()[:16]


def test_content_hash_ignores_key_order():
    assert content_hash({"a": 1, "b": [1, 2]}) == content_hash({"b": [1, 2], "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    p = atomic_write(tmp_path / "sub" / "x.txt", "abc")
    assert p.read_text() == "abc"
    assert sorted(q.name for q in p.parent.iterdir()) == ["x.txt"]


def test_artifact_round_trip_and_header(tmp_path):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "n": 3}
    p = write_artifact(tmp_path / "a.pt", obj)
    back = read_artifact(p)
    assert torch.equal(back["w"], obj["w"]) and back["n"] == 3
    head, payload = p.read_bytes().split(b"\n", 1)
    assert head.split(b" ")[2].decode() == hashlib.sha256(payload).hexdigest()
    j = write_artifact(tmp_path / "a.json", {"x": [1, 2]}, "json")
    assert read_artifact(j) == {"x": [1, 2]}


@pytest.mark.parametrize("suffix", [".pt", ".json"])
def test_flipped_bytes_are_reported_once_and_recomputed(tmp_path, suffix, caplog):
    cache = Cache(tmp_path)
    key = {"k": 1}
    if suffix == ".pt":
        cache.put("models", key, {"w": torch.ones(1000)})
    else:
        cache.put_json("models", key, {"loss": list(range(100))})
    p = cache.path("models", key, suffix)
    blob = bytearray(p.read_bytes())
    for i in range(len(blob) - 64, len(blob)):
        blob[i] ^= 0xFF
    p.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="checksum"):
        read_artifact(p)
    with caplog.at_level(logging.WARNING, "genbench.cache"):
        got = cache.get("models", key) if suffix == ".pt" else cache.get_json("models", key)
    assert got is None
    assert len(caplog.records) == 1 and str(p) in caplog.records[0].getMessage() and "recomputing" in caplog.records[0].getMessage()
    assert not p.exists()  # removed, so the next run recomputes without warning again
    calls = []
    assert cache.cached("models", key, lambda: calls.append(1) or {"w": torch.zeros(2)})["w"].shape == (2,)
    assert calls == [1]


def _warned(caplog, fn, match):
    caplog.clear()
    with caplog.at_level(logging.WARNING, "genbench.cache"):
        out = fn()
    assert any(match in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    return out


def test_truncated_and_foreign_files_are_not_trusted(tmp_path, caplog):
    cache = Cache(tmp_path)
    cache.put_json("models", {"k": 2}, {"wall_time_s": 1.5})
    p = cache.path("models", {"k": 2}, ".json")
    p.write_bytes(p.read_bytes()[:-3])
    assert _warned(caplog, lambda: cache.get_json("models", {"k": 2}), "checksum") is None
    q = cache.path("samples", {"k": 3})
    q.parent.mkdir(parents=True)
    torch.save({"x": torch.zeros(2)}, q)  # a plain torch file (e.g. planted) has no checksum header
    assert _warned(caplog, lambda: cache.get("samples", {"k": 3}), "header") is None
    r = cache.path("features", {"k": 4}, ".json")
    r.parent.mkdir(parents=True)
    r.write_bytes(b"GENBENCH-ARTIFACT 1 " + hashlib.sha256(b"{not json").hexdigest().encode() + b" json\n{not json")
    assert _warned(caplog, lambda: cache.get_json("features", {"k": 4}), "cannot be parsed") is None


def test_cached_revalidates_hits(tmp_path, caplog):
    cache = Cache(tmp_path)
    cache.put("samples", {"k": 5}, {"x": torch.full((3, 2), float("nan"))})

    def validate(obj):
        if not torch.isfinite(obj["x"]).all():
            raise ValueError("non-finite samples")

    out = _warned(caplog, lambda: cache.cached("samples", {"k": 5}, lambda: {"x": torch.zeros(3, 2)}, validate=validate), "non-finite")
    assert torch.equal(out["x"], torch.zeros(3, 2))
    assert torch.equal(cache.get("samples", {"k": 5})["x"], torch.zeros(3, 2))


def test_cache_kind_cannot_escape_root(tmp_path):
    with pytest.raises(ValueError, match="invalid cache kind"):
        Cache(tmp_path).path("../x", {"k": 1})
    p = Cache(tmp_path).path("models", {"name": "../../etc/passwd"})
    assert p.resolve().is_relative_to(tmp_path.resolve())
    json.dumps(str(p))
