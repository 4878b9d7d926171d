"""Artifact I/O: atomic writes and deterministic Parquet/JSON files.

Every file taskvec produces goes through this module, so that a crash never leaves a partial file
at an output path and the same inputs always give the same bytes (DVC hashes them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from taskvec.errors import ArtifactError

PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "write_statistics": True,
    "row_group_size": 8192,
}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    Works for files and directories. On any error the temporary is removed and ``path`` is left as it
    was, so readers never see a half-written artifact.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp = tmp_dir / target.name
    try:
        yield tmp
        if not tmp.exists():
            raise ArtifactError(f"nothing was written for {target}")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def write_parquet(
    table: pa.Table, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None, **options: Any
) -> None:
    """Write ``table`` atomically; ``metadata`` is stored as JSON under the schema key ``taskvec``."""
    if metadata is not None:
        encoded = json.dumps(metadata, sort_keys=True, ensure_ascii=False).encode()
        table = table.replace_schema_metadata({b"taskvec": encoded})
    settings = {**PARQUET_OPTIONS, **options}
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **settings)


REBUILD = "the step that wrote it makes it again"


def read_parquet(path: str | os.PathLike[str], rebuild_hint: str = "") -> pa.Table:
    """Read a Parquet artifact, turning low-level errors into a message that names the file and how
    to make it again (``rebuild_hint``: which command makes it)."""
    path = Path(path)
    hint = rebuild_hint or REBUILD
    if not path.exists():
        raise ArtifactError(f"{path} does not exist", fix=hint)
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise ArtifactError(
            f"{path} is not a readable Parquet file: truncated or corrupted ({error})",
            fix=f"delete it; {hint}",
        ) from error


def parquet_metadata(table_or_path: pa.Table | str | os.PathLike[str]) -> dict[str, Any]:
    """Return the ``taskvec`` metadata stored by :func:`write_parquet` (empty if there is none)."""
    if isinstance(table_or_path, pa.Table):
        schema = table_or_path.schema
    else:
        schema = pq.read_schema(table_or_path)
    raw = (schema.metadata or {}).get(b"taskvec")
    return json.loads(raw) if raw else {}


def write_json(data: Any, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_bytes(data: bytes, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
