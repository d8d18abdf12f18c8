"""Running a converter's command line in tests."""
from __future__ import annotations

import json
from pathlib import Path


def convert(cli, tmp_path: Path, source: Path, *extra: str) -> tuple[int, Path]:
    """(exit code, output file) of ``python -m dataset_builders.<name> --input source ...``."""
    out = tmp_path / "out.jsonl"
    return cli.main(["--input", str(source), "--output", str(out), *extra]), out


def convert_rows(cli, tmp_path: Path, rows: list[dict], name: str) -> tuple[int, Path]:
    """Write ``rows`` as a jsonl release named ``name``, convert it; (exit code, source file)."""
    source = tmp_path / name
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    code, _ = convert(cli, tmp_path, source)
    return code, source
