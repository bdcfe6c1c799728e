//! `output.format: delta`: each published table is also a Delta Lake table, read here by
//! the `deltalake` Python package (delta-rs, from PyPI) as Spark, Databricks or Polars
//! would read it, without segflow's conventions. Built with `--features delta`.
//!
//! Skipped with a note when python3 cannot import deltalake, unless
//! `SEGFLOW_REQUIRE_DELTALAKE` is set (as in `.ci/run`).

mod common;

use common::Project;

const PIPELINE: &str = "pipelines/customer_segments.yaml";
const OUTPUT: &str = "out/customer_segments";

/// What the `deltalake` package reads of `table`: rows per run, the partition columns,
/// the number of commits and the columns.
fn read_with_deltalake(project: &Project, table: &str) -> serde_json::Value {
    let script = format!(
        r#"
import collections, json, os, sys
from deltalake import DeltaTable
table = DeltaTable("{OUTPUT}/{table}")
rows = table.to_pyarrow_table()
runs = collections.Counter(rows.column("run_id").to_pylist())
print(json.dumps({{
    "rows": sorted(runs.items()),
    "partition_columns": table.metadata().partition_columns,
    "commits": len(table.history()),
    "columns": rows.column_names,
}}))
# deltalake's runtime aborts while the interpreter shuts down ("terminate called without an
# active exception"), after everything above: leave before it does.
sys.stdout.flush()
os._exit(0)
"#
    );
    common::python_json(&project.path("."), &script, &[])
}

/// The example with its output in Delta format.
fn delta_project() -> Project {
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "    store: output\n    path: customer_segments\n",
        "    store: output\n    path: customer_segments\n    format: delta\n",
    );
    project
}

#[test]
fn each_table_is_a_delta_table_with_a_partition_per_run() {
    let project = delta_project();
    project.segflow(&["check", PIPELINE]).assert_exit(0);
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    project
        .segflow(&["run", PIPELINE, "--var", "as_of=2011-09-01"])
        .assert_exit(0);
    // A rerun of the first day replaces its partition: one commit more, no extra rows.
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    for table in ["segments", "centroids", "rejects/raw_transactions"] {
        let log = project.path(&format!("{OUTPUT}/{table}/_delta_log"));
        assert!(log.is_dir(), "{}", log.display());
    }
    if !common::python_has("deltalake", "SEGFLOW_REQUIRE_DELTALAKE") {
        return;
    }
    let version = |run_id: &str| common::published_run(&project.path(OUTPUT), run_id);
    let rows = |run_id: &str, table: &str| -> u64 {
        common::table(&version(run_id), table)
            .iter()
            .map(|batch| batch.num_rows() as u64)
            .sum()
    };
    for table in [
        "segments",
        "centroids",
        "profile",
        "rejects/raw_transactions",
    ] {
        let read = read_with_deltalake(&project, table);
        assert_eq!(
            read["rows"],
            serde_json::json!([
                ["2011-09-01", rows("2011-09-01", table)],
                ["2011-12-10", rows("2011-12-10", table)]
            ]),
            "{table}: the published version of each run, once"
        );
        assert_eq!(read["partition_columns"], serde_json::json!(["run_id"]));
        assert_eq!(
            read["commits"], 4,
            "{table}: created, then one commit per publish"
        );
        assert!(
            read["columns"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c == "as_of"),
            "{table}: {}",
            read["columns"]
        );
    }
    // The Hive layout beside it is unchanged: the same files, loaders that glob still work.
    assert_eq!(
        common::table_files(&version("2011-12-10"), "segments").len(),
        1
    );
}

#[test]
fn gc_commits_a_delta_log_a_crash_left_behind_before_deleting_files() {
    let project = delta_project();
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    // A rerun that dies after the run's commit, its _SUCCESS and the tables' (publish
    // steps: each file moved, the manifest, the commit, _SUCCESS, each table's _SUCCESS),
    // just before the Delta commits: the logs still name version 1.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::published_run(&project.path(OUTPUT), "2011-12-10").join("_MANIFEST.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let steps = manifest["files"].as_array().unwrap().len()
        + 3
        + manifest["tables"].as_array().unwrap().len();
    let crashed = project.segflow_with_env(
        &["run", PIPELINE],
        &[("SEGFLOW_TEST_ABORT_AFTER_PUBLISH_STEP", &steps.to_string())],
    );
    assert!(
        crashed.stderr.contains(&format!(
            "aborting after publish step {steps} (pointed a table's _SUCCESS at the commit)"
        )),
        "{}",
        crashed.stderr
    );
    project
        .segflow(&["gc", PIPELINE, "--older-than", "0s"])
        .assert_exit(0);
    if !common::python_has("deltalake", "SEGFLOW_REQUIRE_DELTALAKE") {
        return;
    }
    let version = common::published_run(&project.path(OUTPUT), "2011-12-10");
    let rows: u64 = common::table(&version, "segments")
        .iter()
        .map(|batch| batch.num_rows() as u64)
        .sum();
    let read = read_with_deltalake(&project, "segments");
    assert_eq!(read["rows"], serde_json::json!([["2011-12-10", rows]]));
    assert_eq!(
        read["commits"], 3,
        "created, published, then brought along by gc"
    );
}

#[test]
fn a_run_whose_columns_differ_from_its_delta_table_publishes_nothing() {
    let project = delta_project();
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    let before = common::published_run(&project.path(OUTPUT), "2011-12-10");
    // The value stage's columns go from segments: a Delta table keeps its first run's.
    project.without_value_stage();
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(1);
    assert!(
        run.stderr.contains("table `segments` has the columns")
            && run
                .stderr
                .contains("a Delta table keeps the columns of its first run"),
        "{}",
        run.stderr
    );
    assert_eq!(
        common::published_run(&project.path(OUTPUT), "2011-12-10"),
        before,
        "the published version stays"
    );
    assert!(!project.path(&format!("{OUTPUT}/_staging")).exists());
}

/// On an S3-compatible store, through segflow's own object store: a rerun's commit
/// removes the first version's files of the run and adds the new ones.
#[test]
fn delta_logs_are_committed_on_s3() {
    let Some(server) = common::seaweedfs::SeaweedFs::start(&["lake"]) else {
        return;
    };
    let project = delta_project();
    let csv = std::fs::read(project.path("fixtures/retail/transactions.csv")).unwrap();
    server.upload("lake", "fixtures/retail/transactions.csv", csv);
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = [
        "run",
        PIPELINE,
        "--var",
        "fixtures=s3://lake/fixtures",
        "--var",
        "output=s3://lake/out",
    ];
    project.segflow_with_env(&args, &env).assert_exit(0);
    project.segflow_with_env(&args, &env).assert_exit(0);
    let log = "out/customer_segments/segments/_delta_log/";
    let commits: Vec<String> = server
        .list("lake", log)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        commits,
        (0..3)
            .map(|version| format!("{log}{version:020}.json"))
            .collect::<Vec<_>>()
    );
    let rerun = String::from_utf8(server.get("lake", &commits[2]).to_vec()).unwrap();
    let actions: Vec<serde_json::Value> = rerun
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let paths = |kind: &str| -> Vec<String> {
        actions
            .iter()
            .filter_map(|action| action.get(kind)?["path"].as_str().map(str::to_string))
            .collect()
    };
    let (removed, added) = (paths("remove"), paths("add"));
    assert_eq!((removed.len(), added.len()), (1, 1), "{rerun}");
    assert_ne!(removed, added);
    assert!(
        added[0].starts_with("run_id=2011-12-10/part-00000-"),
        "{rerun}"
    );
    // The files the log names are the ones published, and the replaced one is gone.
    let keys: Vec<String> = server
        .list("lake", "out/customer_segments/segments/run_id=2011-12-10/")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert!(keys.iter().any(|key| key.ends_with(&added[0])), "{keys:?}");
    assert!(
        keys.iter().all(|key| !key.ends_with(&removed[0])),
        "{keys:?}"
    );
}
