import json

from bench.store import ResultStore


def test_append_and_torn_tail(tmp_path):
    s = ResultStore(tmp_path)
    s.append({"job": "a", "generator": "g", "metric": "fid", "value": 1.0})
    with open(s.path, "ab") as f:
        f.write(b'{"job": "b", "gener')  # torn write from a kill
    assert [r["job"] for r in s.records()] == ["a"]
    s.append({"job": "c", "generator": "g", "metric": "fid", "value": float("nan")})
    lines = s.path.read_bytes().splitlines()
    assert [json.loads(x)["job"] for x in lines] == ["a", "c"]
    assert s.records()[1]["value"] is None  # NaN stored as null, valid JSON


def test_duplicates_dropped(tmp_path):
    s = ResultStore(tmp_path)
    for v in (1.0, 2.0):
        s.append({"job": "a", "generator": "g", "metric": "fid", "value": v})
    assert [r["value"] for r in s.records()] == [1.0]


def test_a_quiet_timing_replaces_one_flagged_loaded(tmp_path):
    """bench run --retime appends a second timing record of a key; the first stays unless it was flagged loaded
    and the new one is not."""
    s = ResultStore(tmp_path)
    rec = {"job": "a", "generator": "g", "metric": "latency_ms"}
    s.append({**rec, "value": 9.0, "loaded": True})
    s.append({"job": "a", "generator": "g", "metric": "fid", "value": 1.0})
    assert s.loaded_keys() == {("a", "g", "latency_ms")}
    s.append({**rec, "value": 8.0, "loaded": True})  # still loaded: the first stays
    assert [r["value"] for r in s.records()] == [9.0, 1.0]
    s.append({**rec, "value": 5.0, "loaded": False})  # quiet: replaces it, in place
    s.append({**rec, "value": 7.0, "loaded": False})  # a later quiet one does not replace a quiet one
    assert [r["value"] for r in s.records()] == [5.0, 1.0]
    assert s.loaded_keys() == set()
