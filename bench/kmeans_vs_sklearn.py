#!/usr/bin/env python3
"""segflow's k-means against scikit-learn's on the same scaled features.

Runs the example pipeline (on the shipped fixture, or on N generated transactions), reads
back the customers' raw features and the fitted model (model.json: clips, log1p, scaler),
rebuilds the exact matrix segflow clustered, fits scikit-learn's KMeans on it with the same
k, init (k-means++), restarts, tolerance and iteration cap, and prints both inertias (sum of
squared distances, model units) and fit times. segflow's inertia must be within 1% of
scikit-learn's: the script exits 1 otherwise.

    pip install scikit-learn pyarrow numpy
    python3 bench/kmeans_vs_sklearn.py                 # the 30,000-line fixture
    python3 bench/kmeans_vs_sklearn.py --rows 2000000  # generated transactions
    python3 bench/kmeans_vs_sklearn.py --rows 2000000 --fit-sample 10000

SEGFLOW_BIN picks the binary (default: target/release/segflow, else the debug build).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.cluster import KMeans

import published

ROOT = pathlib.Path(__file__).resolve().parent.parent
PIPELINE = ROOT / "pipelines" / "customer_segments.yaml"


def segflow_binary() -> pathlib.Path:
    if os.environ.get("SEGFLOW_BIN"):
        return pathlib.Path(os.environ["SEGFLOW_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    for profile in ("release", "debug"):
        candidate = target / profile / "segflow"
        if candidate.exists():
            return candidate
    sys.exit("no segflow binary: `cargo build --release` (or set SEGFLOW_BIN)")


def scaled_features(table, model: dict) -> np.ndarray:
    """The matrix segflow clustered: raw features, clipped, log1p'd and scaled by model.json."""
    columns = []
    for j, feature in enumerate(model["features"]):
        x = table.column(feature["name"]).to_numpy().astype(float)
        if feature["winsorize"]:
            x = np.clip(x, feature["winsorize"]["low"], feature["winsorize"]["high"])
        if feature["log1p"]:
            x = np.log1p(x)
        columns.append((x - model["scaler"]["centers"][j]) / model["scaler"]["scales"][j])
    return np.column_stack(columns)


def run_pipeline(binary, pipeline, variables, report_path):
    subprocess.run(
        [binary, "-q", "run", pipeline, *variables, "--run-id", "bench", "--report-json", report_path],
        check=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="generate this many transactions instead of the fixture")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fit-sample", type=int, help="let segflow fit on a sample of this many customers (scikit-learn fits on all)")
    args = parser.parse_args()
    binary = segflow_binary()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        variables = ["--var", f"output=file://{tmp}/out"]
        if args.rows:
            (tmp / "data" / "retail").mkdir(parents=True)
            subprocess.run(
                [binary, "-q", "generate", tmp / "data" / "retail" / "transactions.csv",
                 "--rows", str(args.rows), "--seed", str(args.seed)],
                check=True,
            )
            variables += ["--var", f"fixtures=file://{tmp}/data"]
        pipeline = PIPELINE
        if args.fit_sample:
            # A copy beside the original, so its relative paths still resolve.
            pipeline = PIPELINE.with_name(f".bench-{os.getpid()}.yaml")
            text = PIPELINE.read_text().replace("  seed: 42\n", f"  seed: 42\n  fit_sample: {args.fit_sample}\n")
            pipeline.write_text(text)
        report_path = tmp / "report.json"
        try:
            run_pipeline(binary, pipeline, variables, report_path)
        finally:
            if pipeline != PIPELINE:
                pipeline.unlink()
        report = json.loads(report_path.read_text())
        output = tmp / "out" / "customer_segments"
        model = json.loads((published.version(output, "bench") / "model.json").read_text())
        x = scaled_features(published.table(output, "bench", "segments"), model)

    segment = report["segment"]
    # segflow's settings, from the model: restarts, tolerance (relative to the data's
    # variance, scikit-learn's rule) and the iteration cap.
    restarts = model["restarts"]
    started = time.process_time()
    sklearn = KMeans(
        n_clusters=segment["k"], init="k-means++", n_init=restarts, tol=model["tolerance"],
        max_iter=model["max_iterations"], random_state=segment["seed"], algorithm="lloyd",
    ).fit(x)
    sklearn_cpu = time.process_time() - started

    ours = model["inertia"]
    theirs = float(sklearn.inertia_)
    gap = (ours - theirs) / theirs
    print(f"customers {x.shape[0]:,}  features {x.shape[1]}  k {segment['k']}  restarts {restarts}")
    print(f"segflow  inertia {ours:14.3f}  iterations {segment['iterations']:4d}  stage time {segment['duration_ms'] / 1000:.3f} s (wall, whole stage)")
    print(f"sklearn  inertia {theirs:14.3f}  iterations {sklearn.n_iter_:4d}  fit time   {sklearn_cpu:.3f} s (CPU)")
    print(f"segflow / sklearn inertia: {ours / theirs:.4f} ({gap:+.2%})")
    if gap > 0.01:
        print("FAIL: segflow's inertia is more than 1% above scikit-learn's")
        return 1
    print("ok: within 1% (or better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
