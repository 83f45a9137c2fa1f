"""Reading the operator's table files (registries): CSV or Parquet, chosen by suffix."""

from __future__ import annotations

from pathlib import Path

import polars as pl

__all__ = ["read_table"]


def read_table(path: Path, *, error: type[ValueError], what: str) -> pl.DataFrame:
    """Read ``path`` as Parquet (``.parquet``, ``.pq``) or as CSV with every column as text.

    Args:
        path: the file.
        error: the exception type to raise (the caller's own, e.g. ``RegistryError``).
        what: how the message names the file, e.g. ``"registry file"``.

    Raises:
        error: the file is missing or polars cannot read it (the message names the path).
    """
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema=False)
    except Exception as cause:  # polars raises several exception types
        raise error(f"cannot read {what} {path}: {str(cause).splitlines()[0][:300]}") from cause
