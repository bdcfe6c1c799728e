//! The published tables loaded the way a warehouse loads them, over two runs: with DuckDB
//! (from PyPI) globbing a table's folder with Hive partitioning, and with DataFusion as an
//! external table partitioned by `run_id`. No segflow code reads them back here.
//!
//! DuckDB is skipped with a note when python3 cannot import it, unless
//! `SEGFLOW_REQUIRE_DUCKDB` is set (as in `.ci/run`).

mod common;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use common::Project;

const PIPELINE: &str = "pipelines/customer_segments.yaml";
const OUTPUT: &str = "out/customer_segments";

/// The example published as two runs: the default day and an earlier one.
fn two_runs() -> Project {
    let project = Project::copy_of_repository();
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    project
        .segflow(&["run", PIPELINE, "--var", "as_of=2011-09-01"])
        .assert_exit(0);
    project
}

/// Rows of `table` per run, as the runs' manifests count them.
fn manifest_rows(project: &Project, table: &str) -> Vec<(String, u64)> {
    ["2011-09-01", "2011-12-10"]
        .iter()
        .map(|run_id| {
            let version = common::published_run(&project.path(OUTPUT), run_id);
            let rows = common::table(&version, table)
                .iter()
                .map(RecordBatch::num_rows)
                .sum::<usize>();
            (run_id.to_string(), rows as u64)
        })
        .collect()
}

#[test]
fn duckdb_reads_each_table_folder_with_hive_partitioning() {
    if !common::python_has("duckdb", "SEGFLOW_REQUIRE_DUCKDB") {
        return;
    }
    let project = two_runs();
    let script = format!(
        r#"
import duckdb, json
out = {{}}
for table in ["segments", "centroids", "profile", "value_by_segment", "ltv", "rejects/raw_transactions", "rejects/valid_transactions"]:
    source = f"read_parquet('{OUTPUT}/{{table}}/*/*.parquet', hive_partitioning = true)"
    rows = duckdb.sql(f"SELECT CAST(run_id AS VARCHAR) AS r, count(*) FROM {{source}} GROUP BY r ORDER BY r").fetchall()
    types = dict((name, kind) for name, kind, *_ in duckdb.sql(f"DESCRIBE SELECT * FROM {{source}}").fetchall())
    as_of = duckdb.sql(f"SELECT DISTINCT CAST(run_id AS VARCHAR), CAST(as_of AS VARCHAR) FROM {{source}} ORDER BY 1").fetchall()
    out[table] = {{"rows": rows, "types": types, "as_of": as_of}}
names = duckdb.sql(
    "SELECT count(*) FROM read_parquet('{OUTPUT}/segments/*/*.parquet', hive_partitioning = true) s "
    "JOIN read_parquet('{OUTPUT}/centroids/*/*.parquet', hive_partitioning = true) c "
    "USING (run_id, segment_id) WHERE s.segment_name <> c.name").fetchall()[0][0]
out["names_differing_from_centroids"] = names
print(json.dumps(out))
"#
    );
    let loaded: serde_json::Value = common::python_json(&project.path("."), &script, &[]);
    for table in [
        "segments",
        "centroids",
        "profile",
        "value_by_segment",
        "ltv",
        "rejects/raw_transactions",
        "rejects/valid_transactions",
    ] {
        let rows: Vec<(String, u64)> = loaded[table]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                (
                    row[0].as_str().unwrap().to_string(),
                    row[1].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(rows, manifest_rows(&project, table), "{table}");
        let types = &loaded[table]["types"];
        // The folder's value wins over the file's string column, and DuckDB reads a
        // partition value that looks like a date as one (`hive_types` says otherwise).
        assert_eq!(types["run_id"], "DATE", "{table}: {types}");
        assert_eq!(types["as_of"], "DATE", "{table}: {types}");
        assert_eq!(
            loaded[table]["as_of"],
            serde_json::json!([["2011-09-01", "2011-09-01"], ["2011-12-10", "2011-12-10"]]),
            "{table}: the run's as_of in every row"
        );
    }
    for (table, column, expected) in [
        ("segments", "customer_id", "BIGINT"),
        ("segments", "segment_id", "INTEGER"),
        ("segments", "segment_name", "VARCHAR"),
        ("segments", "distance", "DOUBLE"),
        ("segments", "last_purchase", "DATE"),
        // Computed in SQL in nanoseconds, published in microseconds: a plain TIMESTAMP.
        ("rejects/valid_transactions", "invoiced_at", "TIMESTAMP"),
        ("rejects/valid_transactions", "unit_price", "DECIMAL(12,2)"),
    ] {
        let types = &loaded[table]["types"];
        assert_eq!(types[column], expected, "{table}.{column}: {types}");
    }
    assert_eq!(loaded["names_differing_from_centroids"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datafusion_reads_a_table_folder_as_an_external_table_partitioned_by_run() {
    let project = tokio::task::spawn_blocking(two_runs).await.unwrap();
    let ctx = datafusion::prelude::SessionContext::new();
    let location = project.path(&format!("{OUTPUT}/segments/*.parquet"));
    // The columns as the manifest declares them; `run_id` comes from the folder names.
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE segments (customer_id BIGINT NOT NULL, segment_id INT NOT NULL, \
         segment_name VARCHAR NOT NULL, last_purchase DATE, run_id VARCHAR) \
         STORED AS PARQUET PARTITIONED BY (run_id) LOCATION '{}'",
        location.display()
    ))
    .await
    .unwrap();
    let batches = ctx
        .sql(
            "SELECT run_id, count(*) AS customers, count(DISTINCT segment_name) AS names, \
             max(last_purchase) AS last FROM segments GROUP BY run_id ORDER BY run_id",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let run_ids: Vec<&str> = (0..batch.num_rows())
        .map(|row| {
            batch.column(0).as_string_view_opt().map_or_else(
                || batch.column(0).as_string::<i32>().value(row),
                |views| views.value(row),
            )
        })
        .collect();
    let customers: Vec<u64> = batch
        .column(1)
        .as_primitive::<Int64Type>()
        .values()
        .iter()
        .map(|&n| n as u64)
        .collect();
    let expected = manifest_rows(&project, "segments");
    assert_eq!(
        run_ids
            .iter()
            .map(|id| id.to_string())
            .zip(customers)
            .collect::<Vec<_>>(),
        expected
    );
    assert!(batch.column(2).as_primitive::<Int64Type>().value(0) > 1);
    assert_eq!(batch.schema().field(3).data_type(), &DataType::Date32);
    assert!(batch.column(3).is_valid(0));
}

/// The example with its cleaned lines published as `transactions`, split by country, and
/// its customer features as `customer_features`.
fn with_published_steps() -> Project {
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "    sql_file: ../sql/retail/clean_transactions.sql\n",
        "    sql_file: ../sql/retail/clean_transactions.sql\n    publish: {table: transactions, partition_by: [country]}\n",
    );
    project.replace_in(
        PIPELINE,
        "    sql_file: ../sql/retail/customer_features.sql\n",
        "    sql_file: ../sql/retail/customer_features.sql\n    publish: true\n",
    );
    project
}

#[test]
fn a_published_step_is_a_table_of_the_run_a_warehouse_reloads() {
    let project = with_published_steps();
    project.segflow(&["check", PIPELINE]).assert_exit(0);
    project
        .segflow(&["run", PIPELINE, "--report-json", "report.json"])
        .assert_exit(0);
    // Run again: the rerun's files replace the first version's, partition folders and all.
    project
        .segflow(&["run", PIPELINE, "--report-json", "report.json"])
        .assert_exit(0);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("report.json")).unwrap())
            .unwrap();
    let rows_out = |step: &str| -> u64 {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == step)
            .unwrap()["rows_out"]
            .as_u64()
            .unwrap()
    };
    let version = common::published_run(&project.path(OUTPUT), "2011-12-10");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(version.join("_MANIFEST.json")).unwrap())
            .unwrap();
    let transactions = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|table| table["name"] == "transactions")
        .unwrap();
    assert_eq!(transactions["partition_by"], serde_json::json!(["country"]));
    assert_eq!(
        transactions["rows"].as_u64(),
        Some(rows_out("clean_transactions"))
    );
    for file in common::table_files(&version, "transactions") {
        let relative = file.strip_prefix(project.path(OUTPUT)).unwrap();
        let folders: Vec<String> = relative
            .parent()
            .unwrap()
            .iter()
            .map(|part| part.to_string_lossy().into_owned())
            .collect();
        assert_eq!(folders[..2], ["transactions", "run_id=2011-12-10"]);
        assert!(folders[2].starts_with("country="), "{}", relative.display());
    }

    if common::python_has("duckdb", "SEGFLOW_REQUIRE_DUCKDB") {
        let script = format!(
            r#"
import duckdb, json
lines = "read_parquet('{OUTPUT}/transactions/*/*/*.parquet', hive_partitioning = true)"
features = "read_parquet('{OUTPUT}/customer_features/*/*.parquet', hive_partitioning = true)"
print(json.dumps({{
    "lines": duckdb.sql(f"SELECT count(*), count(DISTINCT country), count(DISTINCT run_id) FROM {{lines}}").fetchall()[0],
    "uk": duckdb.sql(f"SELECT count(*) FROM {{lines}} WHERE country = 'United Kingdom'").fetchall()[0][0],
    "types": dict((n, t) for n, t, *_ in duckdb.sql(f"DESCRIBE SELECT * FROM {{lines}}").fetchall()),
    "features": duckdb.sql(f"SELECT count(*), count(DISTINCT customer_id) FROM {{features}}").fetchall()[0],
}}))
"#
        );
        let loaded: serde_json::Value = common::python_json(&project.path("."), &script, &[]);
        let lines = rows_out("clean_transactions");
        assert_eq!(
            loaded["lines"],
            serde_json::json!([lines, 16, 1]),
            "every cleaned line once, after a rerun too"
        );
        assert!(loaded["uk"].as_u64().unwrap() > lines / 2);
        assert_eq!(loaded["types"]["invoiced_at"], "TIMESTAMP");
        assert_eq!(loaded["types"]["country"], "VARCHAR");
        assert_eq!(
            loaded["features"],
            serde_json::json!([1310, 1310]),
            "one row per customer, as the segment stage read them"
        );
    }
}

#[test]
fn publish_mistakes_are_named_at_their_keys() {
    let project = with_published_steps();
    project.replace_in(
        PIPELINE,
        "partition_by: [country]}",
        "partition_by: [county]}",
    );
    let run = project.segflow(&["check", PIPELINE]);
    run.assert_exit(3);
    assert!(
        run.stderr.contains(
            "steps[0].publish.partition_by[0]: `clean_transactions` has no column `county` (did you mean `country`?)"
        ),
        "{}",
        run.stderr
    );
    project.replace_in(
        PIPELINE,
        "publish: {table: transactions, partition_by: [county]}",
        "publish: {table: segments, partition_by: [run_id]}",
    );
    let run = project.segflow(&["check", PIPELINE]);
    run.assert_exit(3);
    for expected in [
        "steps[0].publish.table: `segments` is a table segflow publishes itself",
        "steps[0].publish.partition_by[0]: every table is partitioned by `run_id` first",
    ] {
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
    }
}
