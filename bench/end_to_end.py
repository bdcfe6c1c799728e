#!/usr/bin/env python3
"""segflow end to end against DuckDB + scikit-learn, on generated transactions.

For each size (default 1M, 10M and 100M invoice lines):
  1. generates the lines as Parquet with `segflow generate` (cached in bench/data/);
  2. runs the example pipeline over them (bench/customer_segments_parquet.yaml: clean,
     validate, RFM features, k-means with k=5 and seed 42, Parquet segments);
  3. runs the same work as a user would without segflow (bench/peer.py: the same SQL files
     in DuckDB, then scikit-learn's KMeans with the same k, init, restarts, tolerance and
     seed on the same scaled features, segments written to Parquet);
  4. fits scikit-learn's KMeans once more on exactly the matrix segflow clustered (rebuilt
     from model.json; past fit_sample customers, on the very sample segflow fitted on) for
     the k-means-alone comparison.
Each tool runs in its own process; wall time, CPU time (user + system) and peak RSS come
from the operating system (wait4). The table is printed and written to
bench/results/end_to_end.md and .json.

    pip install duckdb scikit-learn pyarrow numpy
    cargo build --release
    python3 bench/end_to_end.py                       # 1M, 10M, 100M
    python3 bench/end_to_end.py --sizes 1M,10M        # a quicker run

Sizes of 100M lines and more run both tools with --memory-limit (default 2GB) so that the
run must spill rather than hold its tables; the check is that it completes with a peak RSS
under 3 GB and in no more than 12x the 10M time.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.cluster import KMeans

import published

ROOT = pathlib.Path(__file__).resolve().parent
PIPELINE = ROOT / "customer_segments_parquet.yaml"
DATA = ROOT / "data"
RESULTS = ROOT / "results"
SEED = 42


def segflow_binary() -> pathlib.Path:
    if os.environ.get("SEGFLOW_BIN"):
        return pathlib.Path(os.environ["SEGFLOW_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT.parent / "target"))
    binary = target / "release" / "segflow"
    if not binary.exists():
        sys.exit(f"no release build at {binary}: run `cargo build --release` (or set SEGFLOW_BIN)")
    return binary


def parse_size(text: str) -> int:
    units = {"K": 1_000, "M": 1_000_000, "G": 1_000_000_000}
    text = text.strip().upper()
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def label(rows: int) -> str:
    return f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else str(rows)


def measured(command: list) -> dict:
    """Runs `command`, returning its stdout, wall and CPU seconds and peak RSS (bytes)."""
    started = time.perf_counter()
    process = subprocess.Popen([str(part) for part in command], stdout=subprocess.PIPE, text=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {' '.join(map(str, command))}")
    return {
        "stdout": stdout,
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
    }


def generated(binary: pathlib.Path, rows: int) -> pathlib.Path:
    path = DATA / f"lines-{label(rows)}-seed{SEED}.parquet"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        print(f"generating {rows:,} lines -> {path}", flush=True)
        measured([binary, "-q", "generate", partial, "--rows", rows, "--seed", SEED, "--format", "parquet"])
        partial.rename(path)
    return path


def segflow_sample(keys: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Row numbers of the customers segflow fits on when it fits on a sample (fit_sample): the
    `size` whose keys hash lowest under the seed. The hash is segflow's `seeded_hash`
    (crates/engine/src/segment/stream.rs) over an integer key's Arrow row encoding: a
    validity byte, then the value big-endian with its sign bit flipped."""
    encoded = keys.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        fnv = (np.full(len(keys), np.uint64(0xCBF29CE484222325)) ^ np.uint64(1)) * prime
        for shift in range(56, -8, -8):
            fnv = (fnv ^ ((encoded >> np.uint64(shift)) & np.uint64(0xFF))) * prime
        z = fnv ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return np.sort(np.argpartition(z, size)[:size])


def clipped_features(table, model: dict) -> np.ndarray:
    """segflow's features as it transforms them before scaling: clipped, then log1p'd."""
    columns = []
    for feature in model["features"]:
        x = table.column(feature["name"]).to_numpy().astype(float)
        if feature["winsorize"]:
            x = np.clip(x, feature["winsorize"]["low"], feature["winsorize"]["high"])
        if feature["log1p"]:
            x = np.log1p(x)
        columns.append(x)
    return np.column_stack(columns)


def scaled_features(table, model: dict, fitted_on):
    """The matrix segflow clustered (its features clipped, log1p'd and scaled by model.json),
    and the rows segflow fitted on: all of them, or the `fitted_on` of its sample."""
    x = clipped_features(table, model)
    fitted = np.arange(len(x))
    if fitted_on:
        fitted = segflow_sample(table.column("customer_id").to_numpy(), fitted_on, model["seed"])
        # The scaler is fitted on the sample: its centres show this is the same sample.
        if not np.allclose(x[fitted].mean(axis=0), model["scaler"]["centers"], rtol=1e-9, atol=0):
            sys.exit("could not rebuild the customers segflow fitted on; the k-means comparison needs them")
    return (x - model["scaler"]["centers"]) / model["scaler"]["scales"], fitted


def bench_size(binary, rows, memory_limit, scratch: pathlib.Path) -> dict:
    data = generated(binary, rows)
    limit_args = ["--memory-limit", memory_limit, "--spill-dir", scratch / "spill"] if memory_limit else []
    print(f"{label(rows)}: segflow", flush=True)
    report_path = scratch / "report.json"
    segflow = measured([
        binary, "-q", "run", PIPELINE,
        "--var", f"data=file://{DATA}", "--var", f"transactions={data.name}",
        "--var", f"output=file://{scratch}/out", "--run-id", "bench",
        "--report-json", report_path, *limit_args,
    ])
    report = json.loads(report_path.read_text())
    output = scratch / "out" / "customer_segments"
    model = json.loads((published.version(output, "bench") / "model.json").read_text())
    segment = report["segment"]

    print(f"{label(rows)}: DuckDB + scikit-learn", flush=True)
    peer_args = ["--memory-limit", memory_limit, "--temp-dir", scratch / "duckdb-spill"] if memory_limit else []
    peer = measured([
        sys.executable, ROOT / "peer.py", "--input", data, "--output", scratch / "peer",
        "--k", segment["k"], "--restarts", model["restarts"], "--tol", model["tolerance"],
        "--max-iter", model["max_iterations"], "--seed", segment["seed"], *peer_args,
        *(["--fit-sample", segment["fitted_on"]] if segment.get("fitted_on") else []),
    ])
    peer_result = json.loads(peer["stdout"])

    # k-means alone, on the very matrix segflow clustered; the best of three fits, so the
    # first call's thread-pool start-up is not counted against scikit-learn. When segflow
    # fitted on a sample, scikit-learn fits on the same customers and both inertias are
    # over every customer.
    fitted_on = segment.get("fitted_on")
    x_all, fitted = scaled_features(published.table(output, "bench", "segments"), model, fitted_on)
    x = x_all[fitted]
    sklearn_fit = {"wall_seconds": float("inf"), "cpu_seconds": float("inf")}
    for _ in range(3):
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        sklearn = KMeans(
            n_clusters=segment["k"], init="k-means++", n_init=model["restarts"], tol=model["tolerance"],
            max_iter=model["max_iterations"], random_state=segment["seed"], algorithm="lloyd",
        ).fit(x)
        sklearn_fit["wall_seconds"] = min(sklearn_fit["wall_seconds"], time.perf_counter() - started_wall)
        sklearn_fit["cpu_seconds"] = min(sklearn_fit["cpu_seconds"], time.process_time() - started_cpu)

    for tool in (segflow, peer):
        tool.pop("stdout")
    return {
        "rows": rows,
        "customers": segment["customers"],
        "memory_limit": memory_limit,
        "segflow": {**segflow, "spilled_steps": [s["name"] for s in report["steps"] if s["spilled"]]},
        "peer": {**peer, **peer_result},
        "kmeans": {
            "segflow_fit_seconds": segment["fit_ms"] / 1000,
            "segflow_iterations": segment["iterations"],
            "segflow_inertia": segment["inertia"],
            "sklearn_fit_wall_seconds": sklearn_fit["wall_seconds"],
            "sklearn_fit_cpu_seconds": sklearn_fit["cpu_seconds"],
            "sklearn_iterations": int(sklearn.n_iter_),
            "sklearn_inertia": float(-sklearn.score(x_all)),
            "fitted_on": fitted_on,
        },
    }


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def render(results: list, machine: str) -> str:
    lines = [
        f"# segflow vs DuckDB + scikit-learn, end to end ({datetime.date.today()})",
        "",
        f"Machine: {machine}. segflow: release build. Peer: DuckDB {__import__('duckdb').__version__}, "
        f"scikit-learn {__import__('sklearn').__version__}. Wall and CPU seconds and peak RSS are the "
        "operating system's figures for each tool's whole process.",
        "",
        "| lines | customers | memory limit | segflow wall | peer wall | wall ratio | segflow CPU | peer CPU | segflow peak RSS | peer peak RSS | segflow lines/s | peer lines/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s, p = r["segflow"], r["peer"]
        lines.append(
            f"| {r['rows']:,} | {r['customers']:,} | {r['memory_limit'] or 'default'} "
            f"| {s['wall_seconds']:.1f} s | {p['wall_seconds']:.1f} s | {s['wall_seconds'] / p['wall_seconds']:.2f} "
            f"| {s['cpu_seconds']:.1f} s | {p['cpu_seconds']:.1f} s | {gb(s['peak_rss_bytes'])} | {gb(p['peak_rss_bytes'])} "
            f"| {r['rows'] / s['wall_seconds']:,.0f} | {r['rows'] / p['wall_seconds']:,.0f} |"
        )
    lines += [
        "",
        "k-means alone, on the same scaled matrix (segflow's fit includes its scaling; scikit-learn's "
        "is the best of three KMeans.fit calls on the matrix segflow clustered, rebuilt from model.json; "
        "where segflow fitted on a sample (fit_sample), scikit-learn fits on the same customers (segflow's seeded "
        "sample, rebuilt here and checked against the scaler fitted on it), "
        "and both inertias are over every customer):",
        "",
        "| lines | fitted on | segflow fit | sklearn fit (wall) | fit ratio | segflow iterations | sklearn iterations | segflow inertia | sklearn inertia | inertia gap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        k = r["kmeans"]
        gap = (k["segflow_inertia"] - k["sklearn_inertia"]) / k["sklearn_inertia"]
        lines.append(
            f"| {r['rows']:,} | {k.get('fitted_on') or r['customers']:,} | {k['segflow_fit_seconds']:.3f} s | {k['sklearn_fit_wall_seconds']:.3f} s "
            f"| {k['segflow_fit_seconds'] / k['sklearn_fit_wall_seconds']:.2f} | {k['segflow_iterations']} "
            f"| {k['sklearn_iterations']} | {k['segflow_inertia']:.2f} | {k['sklearn_inertia']:.2f} | {gap:+.3%} |"
        )
    lines += ["", "Peer phases (seconds): " + "; ".join(
        f"{label(r['rows'])}: SQL {r['peer']['sql_seconds']:.1f}, prepare {r['peer']['prepare_seconds']:.2f}, "
        f"fit {r['peer']['fit_seconds']:.2f}, write {r['peer']['write_seconds']:.2f}" for r in results)]
    spilled = [f"{label(r['rows'])}: {', '.join(r['segflow']['spilled_steps'])}" for r in results if r["segflow"]["spilled_steps"]]
    if spilled:
        lines += ["", "segflow steps whose results spilled to disk: " + "; ".join(spilled)]
    lines += ["", "Targets:"] + targets(results)
    return "\n".join(lines) + "\n"


def targets(results: list) -> list:
    by_rows = {r["rows"]: r for r in results}
    out = []
    if 10_000_000 in by_rows:
        r = by_rows[10_000_000]
        ok = r["segflow"]["wall_seconds"] <= r["peer"]["wall_seconds"]
        out.append(f"- 10M end to end, segflow wall <= peer wall: {'met' if ok else 'NOT met'} "
                   f"({r['segflow']['wall_seconds']:.1f} s vs {r['peer']['wall_seconds']:.1f} s)")
    for r in results:
        k = r["kmeans"]
        gap = (k["segflow_inertia"] - k["sklearn_inertia"]) / k["sklearn_inertia"]
        ok = k["segflow_fit_seconds"] <= k["sklearn_fit_wall_seconds"] and gap <= 0.01
        out.append(f"- {label(r['rows'])} k-means, fit time <= sklearn's and inertia within 1%: {'met' if ok else 'NOT met'}")
    big = [r for r in results if r["rows"] >= 100_000_000]
    for r in big:
        rss_ok = r["segflow"]["peak_rss_bytes"] < 3e9
        line = f"- {label(r['rows'])} with memory limit {r['memory_limit']}: completed, peak RSS {gb(r['segflow']['peak_rss_bytes'])} (< 3 GB: {'met' if rss_ok else 'NOT met'})"
        if 10_000_000 in by_rows:
            ratio = r["segflow"]["wall_seconds"] / by_rows[10_000_000]["segflow"]["wall_seconds"]
            line += f", {ratio:.1f}x the 10M time (<= {r['rows'] / 10_000_000 * 1.2:.0f}x: {'met' if ratio <= r['rows'] / 10_000_000 * 1.2 else 'NOT met'})"
        out.append(line)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,10M,100M", help="comma-separated line counts, e.g. 1M,10M")
    parser.add_argument("--memory-limit", default="2GB", help="limit for sizes of 100M lines and more")
    parser.add_argument("--scratch", help="folder for outputs and spill files (default: a temporary folder)")
    args = parser.parse_args()
    binary = segflow_binary()
    sizes = [parse_size(size) for size in args.sizes.split(",")]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    results = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
            limit = args.memory_limit if rows >= 100_000_000 else None
            results.append(bench_size(binary, rows, limit, pathlib.Path(scratch)))
    text = render(results, machine)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "end_to_end.md").write_text(text)
    (RESULTS / "end_to_end.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
