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
