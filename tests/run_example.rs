//! Runs the shipped example pipeline end to end with the real binary and checks its
//! published outputs row by row.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use common::{Project, read_parquet};

const K: usize = 5;

#[test]
fn example_pipeline_segments_every_valid_customer_once() {
    let project = Project::copy_of_repository();
    let run = project.segflow(&[
        "run",
        "pipelines/customer_segments.yaml",
        "--report-json",
        "report.json",
    ]);
    run.assert_exit(0);
    assert!(run.stdout.contains("segment 0"), "{}", run.stdout);

    let output = common::published(&project.path("out/customer_segments"));
    assert!(
        output.parent().unwrap().ends_with("run_id=2011-12-10"),
        "the pipeline's run id is its as-of day: {}",
        output.display()
    );
    assert!(
        !project.path("out/customer_segments/_staging").exists(),
        "staging is cleaned after publishing"
    );
    let segments = common::table(&output, "segments");
    let keys = int64_column(&segments, "customer_id");
    let unique: BTreeSet<i64> = keys.iter().copied().collect();
    assert_eq!(keys.len(), unique.len(), "each customer appears once");
    assert_eq!(
        unique,
        expected_customers(&project),
        "exactly the customers with a valid purchase before the as-of date"
    );

    let ids: Vec<i32> = segments
        .iter()
        .flat_map(|b| {
            b.column_by_name("segment_id")
                .unwrap()
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert!(ids.iter().all(|&id| (0..K as i32).contains(&id)));

    let profile = common::table(&output, "profile");
    let sizes = int64_column(&profile, "customers");
    assert_eq!(sizes.len(), K);
    assert_eq!(sizes.iter().sum::<i64>() as usize, keys.len());
    for (segment, size) in sizes.iter().enumerate() {
        let counted = ids.iter().filter(|&&id| id == segment as i32).count();
        assert_eq!(*size as usize, counted, "profile size of segment {segment}");
    }
    // Every segment of the example has a name from its roles, none twice; revenue shares
    // add up to the whole.
    let names: Vec<String> = profile
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("name").unwrap().as_string::<i32>();
            column
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let known = [
        "Champions",
        "Loyal",
        "Potential loyalists",
        "New",
        "At risk",
        "Hibernating",
        "Lost",
    ];
    assert!(
        names.iter().all(|n| known.contains(&n.as_str())),
        "{names:?}"
    );
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), K, "{names:?}");
    let revenue: f64 = profile
        .iter()
        .flat_map(|b| {
            b.column_by_name("revenue_share")
                .unwrap()
                .as_primitive::<Float64Type>()
                .values()
                .to_vec()
        })
        .sum();
    assert!((revenue - 1.0).abs() < 1e-9, "{revenue}");
    let centroids = common::table(&output, "centroids");
    assert_eq!(
        centroids.iter().map(RecordBatch::num_rows).sum::<usize>(),
        K
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["segment"]["k"], K);
    assert_eq!(report["segment"]["customers"], keys.len());
    let report_sizes: Vec<i64> = report["segment"]["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(report_sizes, sizes);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "clean_transactions",
            "valid_transactions",
            "daily_purchases",
            "customer_refunds",
            "customer_features"
        ]
    );
    let source = &report["sources"][0];
    assert_eq!(source["rows_read"], 30_000, "the whole fixture is read");
    let quarantined = source["rows_quarantined"].as_u64().unwrap();
    assert!(quarantined > 0, "the fixture holds unparseable dates");
    assert_eq!(
        source["rows_out"].as_u64().unwrap() + quarantined,
        30_000,
        "every row is passed on or quarantined"
    );
    assert_eq!(report["steps"][0]["rows_in"], source["rows_out"]);
    assert_eq!(report["steps"][4]["rows_out"], keys.len());
    let validate = &report["steps"][1];
    // clean_transactions is read only by the step validating it, so it streams into that
    // step instead of being written first; its rows are still counted.
    let clean = &report["steps"][0];
    assert_eq!(clean["streamed_into"], "valid_transactions");
    assert_eq!(clean["rows_out"], validate["rows_in"]);
    assert!(clean["rows_out"].as_u64().unwrap() < clean["rows_in"].as_u64().unwrap());
    assert_eq!(
        clean["rows_removed"].as_u64().unwrap(),
        clean["rows_in"].as_u64().unwrap() - clean["rows_out"].as_u64().unwrap()
    );
    assert!(report["steps"][2].get("streamed_into").is_none());
    assert_eq!(
        validate["rows_in"].as_u64().unwrap(),
        validate["rows_out"].as_u64().unwrap() + validate["rows_quarantined"].as_u64().unwrap()
    );
    let rejects = common::table(&output, "rejects/raw_transactions");
    assert_eq!(
        rejects.iter().map(RecordBatch::num_rows).sum::<usize>() as u64,
        quarantined
    );
    for batch in &rejects {
        let reasons = batch.column_by_name("reason").unwrap().as_string::<i32>();
        let raws = batch.column_by_name("raw").unwrap().as_string::<i32>();
        for row in 0..batch.num_rows() {
            assert!(
                reasons.value(row).starts_with("invoice_date: "),
                "{}",
                reasons.value(row)
            );
            assert!(raws.value(row).split(',').count() >= 8);
        }
    }
    let outputs: Vec<&str> = report["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["url"].as_str().unwrap())
        .collect();
    for table in ["segments", "profile", "centroids"] {
        let partition = format!("/out/customer_segments/{table}/run_id=2011-12-10/part-00000-");
        assert!(
            outputs.iter().any(|u| u.contains(&partition)),
            "{table}: {outputs:?}"
        );
    }
}

#[test]
fn hand_checked_customers_have_exact_rfm_values() {
    let project = Project::copy_of_repository();
    project
        .segflow(&["run", "pipelines/customer_segments.yaml"])
        .assert_exit(0);
    let segments = common::table(
        &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
        "segments",
    );
    let rows = rows_by_customer(&segments);
    // (frequency, recency, T, monetary_value, total_spend, refund_value), worked out in
    // crates/datagen/src/scripted.rs.
    let expected = [
        (90001, (0.0, 0, 270, 0.0, 22.8, 0.0)),
        (90002, (2.0, 146, 334, 25.0, 100.0, 5.0)),
        (90003, (1.0, 80, 100, 30.0, 50.0, 0.0)),
        (90004, (0.0, 0, 39, 0.0, 50.0, 0.0)),
    ];
    for (customer, (frequency, recency, t, monetary, total, refunds)) in expected {
        let row = &rows[&customer];
        assert_eq!(row.frequency, frequency, "frequency of {customer}");
        assert_eq!(row.recency, recency, "recency of {customer}");
        assert_eq!(row.t, t, "T of {customer}");
        assert!(
            (row.monetary_value - monetary).abs() < 1e-9,
            "monetary_value of {customer}: {}",
            row.monetary_value
        );
        assert!(
            (row.total_spend - total).abs() < 1e-9,
            "total_spend of {customer}: {}",
            row.total_spend
        );
        assert!(
            (row.refund_value - refunds).abs() < 1e-9,
            "refund_value of {customer}"
        );
        assert_eq!(
            row.days_since_last_purchase,
            (t - recency) as f64,
            "days since last purchase of {customer}"
        );
    }
}

#[test]
fn same_seed_gives_identical_segments_and_reruns_replace_outputs() {
    let project = Project::copy_of_repository();
    project
        .segflow(&["run", "pipelines/customer_segments.yaml"])
        .assert_exit(0);
    let first = common::table(
        &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
        "segments",
    );
    project
        .segflow(&["run", "pipelines/customer_segments.yaml"])
        .assert_exit(0);
    let mut files: Vec<String> =
        std::fs::read_dir(project.path("out/customer_segments/segments/run_id=2011-12-10"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    files.sort();
    let published = common::table_files(
        &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
        "segments",
    );
    assert_eq!(
        files,
        [
            "_SUCCESS",
            published[0].file_name().unwrap().to_string_lossy().as_ref(),
        ],
        "a rerun replaces its files, it does not add to them"
    );
    let second = common::table(
        &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
        "segments",
    );
    let (first, second) = (pretty(&first), pretty(&second));
    let differing = first.lines().zip(second.lines()).find(|(a, b)| a != b);
    assert_eq!(differing, None, "first differing row between the two runs");
    assert_eq!(first.lines().count(), second.lines().count());
}

/// Customers with at least one purchase line that survives the cleaning rules, computed
/// here independently of the SQL from the raw fixture.
fn expected_customers(project: &Project) -> BTreeSet<i64> {
    csv::Reader::from_path(project.path("fixtures/retail/transactions.csv"))
        .unwrap()
        .records()
        .map(|record| record.unwrap())
        .filter(|r| {
            let valid_date = chrono::NaiveDateTime::parse_from_str(&r[4], "%Y-%m-%d %H:%M:%S")
                .map(|at| at.date() < chrono::NaiveDate::from_ymd_opt(2011, 12, 10).unwrap())
                .unwrap_or(false);
            let quantity: i64 = r[3].parse().unwrap();
            // The validate step quarantines implausible quantities.
            let plausible = quantity.abs() <= 10_000;
            let price: f64 = r[5].parse().unwrap();
            !r[6].is_empty()
                && valid_date
                && plausible
                && quantity > 0
                && price > 0.0
                && !r[0].starts_with('C')
        })
        .map(|r| r[6].parse().unwrap())
        .collect()
}

fn pretty(batches: &[RecordBatch]) -> String {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
}

fn int64_column(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

struct Rfm {
    frequency: f64,
    recency: i64,
    t: i64,
    monetary_value: f64,
    total_spend: f64,
    refund_value: f64,
    days_since_last_purchase: f64,
}

fn rows_by_customer(batches: &[RecordBatch]) -> BTreeMap<i64, Rfm> {
    let mut rows = BTreeMap::new();
    for batch in batches {
        let f64s = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Float64Type>()
                .clone()
        };
        let i64s = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone()
        };
        let (keys, recency, t) = (i64s("customer_id"), i64s("recency"), i64s("T"));
        let (frequency, monetary, total, refunds, since) = (
            f64s("frequency"),
            f64s("monetary_value"),
            f64s("total_spend"),
            f64s("refund_value"),
            f64s("days_since_last_purchase"),
        );
        for i in 0..batch.num_rows() {
            assert!(!monetary.is_null(i));
            rows.insert(
                keys.value(i),
                Rfm {
                    frequency: frequency.value(i),
                    recency: recency.value(i),
                    t: t.value(i),
                    monetary_value: monetary.value(i),
                    total_spend: total.value(i),
                    refund_value: refunds.value(i),
                    days_since_last_purchase: since.value(i),
                },
            );
        }
    }
    rows
}

#[test]
fn run_ids_keep_runs_apart_and_the_manifest_describes_each() {
    let project = Project::copy_of_repository();
    project
        .segflow(&["run", "pipelines/customer_segments.yaml"])
        .assert_exit(0);
    let output = project.path("out/customer_segments");
    let first = common::published_run(&output, "2011-12-10");
    let first_profile = std::fs::read(&common::table_files(&first, "profile")[0]).unwrap();

    let other = project.segflow(&[
        "run",
        "pipelines/customer_segments.yaml",
        "--run-id",
        "backfill-1",
    ]);
    other.assert_exit(0);
    assert!(
        other.stdout.contains("run_id=backfill-1/"),
        "{}",
        other.stdout
    );
    assert_eq!(
        std::fs::read(&common::table_files(&first, "profile")[0]).unwrap(),
        first_profile,
        "another run id leaves the first run alone"
    );
    assert_eq!(common::published_run(&output, "2011-12-10"), first);
    assert_eq!(
        common::published(&output),
        common::published_run(&output, "backfill-1"),
        "_LATEST.json names the run published last"
    );

    // Every file the manifest lists exists with its size and row count, and nothing else.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("_MANIFEST.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["run_id"], "2011-12-10");
    assert_eq!(manifest["pipeline"], "customer_segments");
    assert_eq!(manifest["vars"]["as_of"], "2011-12-10");
    assert!(
        manifest["pipeline_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // Paths are relative to the output folder: tables in their folders, the rest in the
    // version's.
    let mut listed = BTreeSet::new();
    for file in manifest["files"].as_array().unwrap() {
        let path = output.join(file["path"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            file["bytes"].as_u64().unwrap(),
            "{}",
            path.display()
        );
        if path.extension().is_some_and(|ext| ext == "parquet") {
            let rows: usize = read_parquet(&path).iter().map(RecordBatch::num_rows).sum();
            assert_eq!(rows as u64, file["rows"].as_u64().unwrap());
        } else {
            assert!(file.get("rows").is_none(), "{file}");
        }
        listed.insert(file["path"].as_str().unwrap().to_string());
    }
    let mut on_disk = BTreeSet::new();
    collect_files(&output, &first, &mut on_disk);
    const TABLES: [&str; 7] = [
        "centroids",
        "ltv",
        "profile",
        "rejects/raw_transactions",
        "rejects/valid_transactions",
        "segments",
        "value_by_segment",
    ];
    for table in TABLES {
        collect_files(
            &output,
            &output.join(format!("{table}/run_id=2011-12-10")),
            &mut on_disk,
        );
    }
    let version = first.strip_prefix(&output).unwrap().to_string_lossy();
    on_disk.remove(&format!("{version}/_MANIFEST.json"));
    on_disk.retain(|name| !name.ends_with("/_SUCCESS"));
    assert_eq!(listed, on_disk);
    let tables: Vec<&str> = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|table| table["name"].as_str().unwrap())
        .collect();
    assert_eq!(tables, TABLES);
    let segments = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|table| table["name"] == "segments")
        .unwrap();
    assert_eq!(segments["columns"][0]["name"], "customer_id");
    assert_eq!(segments["columns"][0]["type"], "int64");
}

fn collect_files(root: &std::path::Path, dir: &std::path::Path, into: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(root, &path, into);
        } else {
            let relative = path.strip_prefix(root).unwrap();
            into.insert(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}
