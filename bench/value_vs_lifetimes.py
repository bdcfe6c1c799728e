#!/usr/bin/env python3
"""segflow's value stage against lifetimes, on the same customers, in the same run.

For the example pipeline (1,310 customers) and each benchmark size (default the 1M- and
10M-line exports in bench/data/, generated as bench/end_to_end.py does):
  1. runs the pipeline with its value stage (BG/NBD and Gamma-Gamma, weeks, 12 months,
     1% a month) with segflow's release build, and reads back every customer's RFM summary
     and values from segments/ and the fit from value_model.json;
  2. fits lifetimes 0.11.3's BetaGeoFitter and GammaGammaFitter on exactly that RFM table
     (recency and T in weeks) and predicts p_alive, expected purchases over the horizon and
     CLV month by month as segflow defines it (a month is 365.25 / 12 days, cash flows
     booked at each month's end);
  3. evaluates both fits' log-likelihoods with lifetimes' own functions, and compares the
     parameters and every customer's figures.
The time of segflow's value stage is the run report's `value.duration_ms` (fit, predictions
and per-segment tables); lifetimes' is its fits and predictions. The table is printed and
written to bench/results/value_vs_lifetimes.md and .json.

    pip install lifetimes==0.11.3 pyarrow numpy
    cargo build --release
    python3 bench/value_vs_lifetimes.py                 # the example, 1M and 10M lines
    python3 bench/value_vs_lifetimes.py --sizes 1M      # a quicker run
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

import published

ROOT = pathlib.Path(__file__).resolve().parent
REPO = ROOT.parent
RESULTS = ROOT / "results"
DAYS_PER_MONTH = 365.25 / 12
WEEK = 7.0
MONTHS = 12
DISCOUNT = 0.01

VALUE_STAGE = """value:
  time_unit: week
  purchase_model: bg_nbd
  spend_model: gamma_gamma
  horizon: 12 months
  discount_rate: 0.01

"""


def segflow_binary() -> pathlib.Path:
    if os.environ.get("SEGFLOW_BIN"):
        return pathlib.Path(os.environ["SEGFLOW_BIN"])
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "release" / "segflow"
    if not binary.exists():
        sys.exit(f"no release build at {binary}: run `cargo build --release` (or set SEGFLOW_BIN)")
    return binary


def run_segflow(pipeline: pathlib.Path, extra: list, scratch: pathlib.Path) -> dict:
    report = scratch / "report.json"
    command = [str(segflow_binary()), "-q", "run", str(pipeline), "--report-json", str(report),
               "--var", f"output=file://{scratch}/out", "--run-id", "bench", *extra]
    subprocess.run(command, check=True)
    output = scratch / "out" / "customer_segments"
    segments = published.table(output, "bench", "segments").to_pydict()
    model = json.loads((published.version(output, "bench") / "value_model.json").read_text())
    return {"report": json.loads(report.read_text()), "segments": segments, "model": model}


def lifetimes_side(frequency, recency, age, monetary):
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    started = time.perf_counter()
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(frequency, recency, age)
    repeat = (frequency > 0) & (monetary > 0)
    ggf = GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(frequency[repeat], monetary[repeat])
    p_alive = bgf.conditional_probability_alive(frequency, recency, age)
    per_month = DAYS_PER_MONTH / WEEK
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(
        MONTHS * per_month, frequency, recency, age)
    spend = np.asarray(ggf.conditional_expected_average_profit(frequency, monetary))
    clv = np.zeros(len(frequency))
    before = np.zeros(len(frequency))
    for month in range(1, MONTHS + 1):
        cumulative = bgf.conditional_expected_number_of_purchases_up_to_time(
            month * per_month, frequency, recency, age)
        clv += spend * (cumulative - before) / (1 + DISCOUNT) ** month
        before = cumulative
    seconds = time.perf_counter() - started
    return {"bgf": bgf, "ggf": ggf, "p_alive": np.asarray(p_alive), "expected": np.asarray(expected),
            "spend": spend, "clv": clv, "seconds": seconds}


def bg_log_likelihood(params, frequency, recency, age):
    """The total BG/NBD log-likelihood by lifetimes' own function, unscaled time."""
    from lifetimes import BetaGeoFitter

    r, alpha, a, b = params
    weights = np.ones(len(frequency))
    mean = BetaGeoFitter._negative_log_likelihood(
        np.log([r, alpha, a, b]), frequency, recency, age, weights, 0.0)
    return -float(mean) * len(frequency)


def gg_log_likelihood(params, frequency, monetary):
    from lifetimes import GammaGammaFitter

    repeat = (frequency > 0) & (monetary > 0)
    x, m = frequency[repeat], monetary[repeat]
    mean = GammaGammaFitter._negative_log_likelihood(np.log(params), x, m, np.ones(len(x)), 0.0)
    return -float(mean) * len(x)


def relative(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.abs(a - b) / np.maximum(np.abs(b), 1e-12)


def compare(name: str, pipeline: pathlib.Path, extra: list) -> dict:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        ours = run_segflow(pipeline, extra, pathlib.Path(scratch))
    s = ours["segments"]
    frequency = np.asarray(s["frequency"], dtype=float)
    recency = np.asarray(s["recency"], dtype=float) / WEEK
    age = np.asarray(s["T"], dtype=float) / WEEK
    monetary = np.asarray(s["monetary_value"], dtype=float)
    theirs = lifetimes_side(frequency, recency, age, monetary)
    params = ours["model"]["purchase_model"]["params"]
    our_bg = [params["r"], params["alpha"], params["a"], params["b"]]
    their_bg = [float(theirs["bgf"].params_[k]) for k in ["r", "alpha", "a", "b"]]
    spend = ours["model"]["spend_model"]["params"]
    our_gg = [spend["p"], spend["q"], spend["v"]]
    their_gg = [float(theirs["ggf"].params_[k]) for k in ["p", "q", "v"]]
    ll = {
        "segflow": bg_log_likelihood(our_bg, frequency, recency, age),
        "lifetimes": bg_log_likelihood(their_bg, frequency, recency, age),
    }
    gg_ll = {
        "segflow": gg_log_likelihood(our_gg, frequency, monetary),
        "lifetimes": gg_log_likelihood(their_gg, frequency, monetary),
    }
    best, best_gg = max(ll.values()), max(gg_ll.values())
    # Per customer: segflow's values against lifetimes' predictions from segflow's own
    # parameters (the formulas) and from lifetimes' fit (formulas and fit together).
    from lifetimes import BetaGeoFitter
    import pandas as pd

    same = BetaGeoFitter()
    same.params_ = pd.Series(dict(zip(["r", "alpha", "a", "b"], our_bg)))
    ours_p = np.asarray(s["p_alive"], dtype=float)
    ours_e = np.asarray(s["expected_purchases"], dtype=float)
    ours_clv = np.asarray(s["clv"], dtype=float)
    same_p = np.asarray(same.conditional_probability_alive(frequency, recency, age))
    same_e = np.asarray(same.conditional_expected_number_of_purchases_up_to_time(
        MONTHS * DAYS_PER_MONTH / WEEK, frequency, recency, age))
    return {
        "name": name,
        "customers": len(frequency),
        "distinct_histories": ours["model"]["data"]["distinct_histories"],
        "bg_params": {"segflow": our_bg, "lifetimes": their_bg},
        "bg_log_likelihood": ll,
        "bg_log_likelihood_gap": (best - ll["segflow"]) / abs(best),
        "gg_params": {"segflow": our_gg, "lifetimes": their_gg},
        "gg_log_likelihood": gg_ll,
        "gg_log_likelihood_gap": (best_gg - gg_ll["segflow"]) / abs(best_gg),
        "same_params_max_rel": {
            "p_alive": float(relative(ours_p, same_p).max()),
            "expected_purchases": float(relative(ours_e, same_e).max()),
        },
        "fits_max_rel": {
            "p_alive": float(relative(ours_p, theirs["p_alive"]).max()),
            "expected_purchases": float(relative(ours_e, theirs["expected"]).max()),
            "clv": float(relative(ours_clv, theirs["clv"]).max()),
        },
        "seconds": {"segflow_value_stage": ours["report"]["value"]["duration_ms"] / 1000,
                    "lifetimes": theirs["seconds"]},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,10M", help="benchmark exports to value besides the example")
    args = parser.parse_args()
    rows = [compare("example", REPO / "pipelines" / "customer_segments.yaml", [])]
    bench = (ROOT / "customer_segments_parquet.yaml").read_text()
    staged = ROOT / ".value_customer_segments_parquet.yaml"
    staged.write_text(bench.replace("\nsegment:\n", "\n" + VALUE_STAGE + "segment:\n", 1))
    try:
        for size in filter(None, args.sizes.split(",")):
            data = ROOT / "data" / f"lines-{size}-seed42.parquet"
            if not data.exists():
                sys.exit(f"{data} is missing: python3 bench/end_to_end.py --sizes {size} generates it")
            rows.append(compare(f"{size} lines", staged,
                                ["--var", f"data=file://{data.parent}", "--var", f"transactions={data.name}"]))
    finally:
        staged.unlink()
    lines = [
        "| customers | histories | BG/NBD LL segflow | LL lifetimes | segflow below best | GG LL gap | same params: p_alive, E[X] max rel | vs lifetimes' fit: p_alive, E[X], CLV max rel | segflow s | lifetimes s | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seconds = row["seconds"]
        lines.append(
            f"| {row['name']}: {row['customers']:,} | {row['distinct_histories']:,} "
            f"| {row['bg_log_likelihood']['segflow']:.4f} | {row['bg_log_likelihood']['lifetimes']:.4f} "
            f"| {row['bg_log_likelihood_gap']:.2e} | {row['gg_log_likelihood_gap']:.2e} "
            f"| {row['same_params_max_rel']['p_alive']:.1e}, {row['same_params_max_rel']['expected_purchases']:.1e} "
            f"| {row['fits_max_rel']['p_alive']:.1e}, {row['fits_max_rel']['expected_purchases']:.1e}, {row['fits_max_rel']['clv']:.1e} "
            f"| {seconds['segflow_value_stage']:.3f} | {seconds['lifetimes']:.3f} "
            f"| {seconds['segflow_value_stage'] / seconds['lifetimes']:.3f} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "value_vs_lifetimes.md").write_text(table + "\n")
    (RESULTS / "value_vs_lifetimes.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
