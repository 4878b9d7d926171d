from __future__ import annotations

import pyarrow as pa
import pytest

from taskvec import store


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out" / "file.parquet"
    with pytest.raises(RuntimeError):
        with store.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_write_keeps_the_old_file_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "metrics.json"
    store.write_json({"a": 1}, target)
    with pytest.raises(RuntimeError):
        with store.atomic_path(target) as tmp:
            tmp.write_text("{")
            raise RuntimeError("crash")
    assert target.read_text() == '{\n  "a": 1\n}\n'


def test_atomic_directory_replaces_the_whole_directory(tmp_path):
    target = tmp_path / "model"
    for content in ("old", "new"):
        with store.atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / content).write_text(content)
    assert [p.name for p in target.iterdir()] == ["new"]


def test_parquet_is_byte_identical_and_keeps_metadata(tmp_path):
    table = pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    store.write_parquet(table, tmp_path / "a.parquet", {"seed": 1, "source": "é"})
    store.write_parquet(table, tmp_path / "b.parquet", {"source": "é", "seed": 1})
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert store.parquet_metadata(tmp_path / "a.parquet") == {"seed": 1, "source": "é"}
    assert store.read_parquet(tmp_path / "a.parquet").equals(table)


def test_a_truncated_parquet_file_is_reported_by_name(tmp_path):
    path = tmp_path / "broken.parquet"
    store.write_parquet(pa.table({"x": list(range(100))}), path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(store.ArtifactError, match="broken.parquet is not a readable Parquet file"):
        store.read_parquet(path)
