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


def _count_parses(monkeypatch):
    import bench.store as store_mod

    calls = []
    real = store_mod._parse_line

    def counting(raw):
        calls.append(raw)
        return real(raw)

    monkeypatch.setattr(store_mod, "_parse_line", counting)
    return calls


def test_each_line_is_parsed_once_per_process(tmp_path, monkeypatch):
    """Every store on one path shares the process's index: lines appended since the last read (by this store,
    another instance or another process) are parsed, nothing is parsed twice."""
    calls = _count_parses(monkeypatch)
    a, b = ResultStore(tmp_path), ResultStore(tmp_path / "." / "")
    for i in range(3):
        a.append({"job": f"j{i}", "generator": "g", "metric": "fid", "value": float(i)})
    assert len(a.records()) == 3 and len(calls) == 3
    with open(a.path, "ab") as f:  # another process appends
        f.write(b'{"job": "j3", "generator": "g", "metric": "fid", "value": 3.0}\n')
    assert [r["job"] for r in b.records()] == ["j0", "j1", "j2", "j3"] and len(calls) == 4
    a.done_jobs(), a.keys(), b.loaded_keys()
    assert len(calls) == 4


def test_an_edited_file_is_read_again(tmp_path):
    """The index never serves records a rewrite removed, whether the file shrank, grew or kept its size."""
    s = ResultStore(tmp_path)
    s.append({"job": "a", "generator": "g", "metric": "fid", "value": 1.0})
    s.append({"job": "b", "generator": "g", "metric": "fid", "value": 2.0})
    assert len(s.records()) == 2
    lines = s.path.read_text().splitlines(keepends=True)
    s.path.write_text(lines[0].replace('"a"', '"x"'))  # same inode, shorter
    assert [r["job"] for r in s.records()] == ["x"]
    s.path.write_text(lines[0].replace('"a"', '"y"') + lines[1].replace("2.0", "20.0"))  # same inode, longer
    assert [(r["job"], r["value"]) for r in s.records()] == [("y", 1.0), ("b", 20.0)]
    s.path.write_text(lines[0].replace('"a"', '"z"') + lines[1].replace("2.0", "3.0"))  # same size
    assert [(r["job"], r["value"]) for r in s.records()] == [("z", 1.0), ("b", 3.0)]

