#!/usr/bin/env python3
"""What a user would otherwise run: the example's SQL in DuckDB, then scikit-learn's KMeans.

Called by bench/end_to_end.py in its own process (so its CPU time and peak memory are
measured apart from segflow's). Reads the Parquet export, runs the example pipeline's SQL
files (sql/retail/) in DuckDB with each step materialised as a table, as segflow does,
writes the features to Parquet, scales them as the pipeline says (days since last purchase;
log1p of frequency; total spend clipped at its 99th percentile, then log1p; standard
scaling), fits KMeans with the same k, init, restarts, tolerance and seed (on a seeded sample
of customers when segflow fitted on one), and writes the segments to Parquet. Prints one JSON object with its phase timings and the fit's results.
"""

import argparse
import json
import pathlib
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.cluster import KMeans

ROOT = pathlib.Path(__file__).resolve().parent.parent
SQL = ROOT / "sql" / "retail"


def step_sql(name: str, as_of: str) -> str:
    return (SQL / f"{name}.sql").read_text().replace("${as_of}", as_of)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--as-of", default="2011-12-10")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--tol", type=float, required=True)
    parser.add_argument("--max-iter", type=int, default=300)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fit-sample", type=int, help="fit on a seeded sample of this many customers, as segflow's fit_sample")
    parser.add_argument("--memory-limit", help="DuckDB's memory_limit, e.g. 2GB")
    parser.add_argument("--temp-dir", help="where DuckDB spills")
    args = parser.parse_args()
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    db = duckdb.connect()
    if args.memory_limit:
        db.execute(f"SET memory_limit = '{args.memory_limit}'")
    if args.temp_dir:
        db.execute(f"SET temp_directory = '{args.temp_dir}'")
    # The same steps as bench/customer_segments_parquet.yaml, each a table.
    db.execute(f"""
        CREATE TABLE raw_transactions AS
        SELECT * FROM (
            SELECT "InvoiceNo" AS invoice_no, "StockCode" AS stock_code,
                   "Description" AS description, "Quantity" AS quantity,
                   try_cast(nullif("InvoiceDate", '') AS TIMESTAMP) AS invoice_date,
                   "UnitPrice" AS unit_price, "CustomerID" AS customer_id, "Country" AS country
            FROM read_parquet('{args.input}')
        ) WHERE invoice_date IS NOT NULL
    """)
    db.execute(f"CREATE TABLE clean_transactions AS {step_sql('clean_transactions', args.as_of)}")
    db.execute("""
        CREATE TABLE valid_transactions AS
        SELECT * FROM clean_transactions
        WHERE quantity BETWEEN -10000 AND 10000
          AND regexp_full_match(invoice_no, '^C?[0-9]{6,}$')
    """)
    db.execute(f"CREATE TABLE daily_purchases AS {step_sql('daily_purchases', args.as_of)}")
    db.execute(f"""
        CREATE TABLE customer_refunds AS
        SELECT customer_id, sum(-amount) AS refund_value, count(DISTINCT invoice_no) AS refund_invoices
        FROM valid_transactions
        WHERE is_refund AND invoiced_at < DATE '{args.as_of}'
        GROUP BY customer_id
    """)
    db.execute(f"CREATE TABLE customer_features AS {step_sql('customer_features', args.as_of)}")
    db.execute(f"COPY customer_features TO '{out / 'features.parquet'}' (FORMAT parquet)")
    features = db.sql("SELECT * FROM customer_features").arrow()
    if isinstance(features, pa.RecordBatchReader):  # newer DuckDB returns a reader
        features = features.read_all()
    sql_seconds = time.perf_counter() - started

    started = time.perf_counter()
    # With a fit sample, as segflow: the clipping, the scaling and the model are fitted on
    # a seeded sample of customers, then every customer is assigned.
    rows = features.num_rows
    fit_rows = (np.sort(np.random.default_rng(args.seed).choice(rows, args.fit_sample, replace=False))
                if args.fit_sample and args.fit_sample < rows else slice(None))
    recency = features.column("days_since_last_purchase").to_numpy().astype(float)
    frequency = np.log1p(features.column("frequency").to_numpy().astype(float))
    spend = features.column("total_spend").to_numpy().astype(float)
    low, high = np.percentile(spend[fit_rows], 0), np.percentile(spend[fit_rows], 99)
    spend = np.log1p(np.clip(spend, low, high))
    x = np.column_stack([recency, frequency, spend])
    x = (x - x[fit_rows].mean(axis=0)) / x[fit_rows].std(axis=0)
    prepare_seconds = time.perf_counter() - started

    started = time.perf_counter()
    model = KMeans(
        n_clusters=args.k, init="k-means++", n_init=args.restarts, tol=args.tol,
        max_iter=args.max_iter, random_state=args.seed, algorithm="lloyd",
    ).fit(x[fit_rows])
    fit_seconds = time.perf_counter() - started

    started = time.perf_counter()
    labels = model.predict(x)
    inertia = -model.score(x)
    segments = features.append_column("segment_id", pa.array(labels.astype(np.int32)))
    pq.write_table(segments, out / "segments.parquet")
    write_seconds = time.perf_counter() - started

    print(json.dumps({
        "sql_seconds": sql_seconds,
        "prepare_seconds": prepare_seconds,
        "fit_seconds": fit_seconds,
        "write_seconds": write_seconds,
        "customers": int(x.shape[0]),
        "iterations": int(model.n_iter_),
        "inertia": float(inertia),
    }))


if __name__ == "__main__":
    main()
