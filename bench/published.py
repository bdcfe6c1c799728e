"""A published segflow run, found as a loader finds it (README, "What a run writes").

`run_id=<id>/_SUCCESS` names the version folder (manifest, model files); the manifest
lists each table's files, relative to the output folder.
"""
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq


def version(output: pathlib.Path, run_id: str) -> pathlib.Path:
    commit = json.loads((output / f"run_id={run_id}" / "_SUCCESS").read_text())
    return output / commit["path"]


def table(output: pathlib.Path, run_id: str, name: str) -> pa.Table:
    manifest = json.loads((version(output, run_id) / "_MANIFEST.json").read_text())
    files = [output / f["path"] for f in manifest["files"] if f.get("table") == name]
    return pa.concat_tables(pq.read_table(f) for f in files)
