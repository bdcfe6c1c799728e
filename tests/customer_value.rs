//! The value stage on the example pipeline: every customer valued, the per-segment tables
//! adding up to the customers', the same numbers on any number of threads, the model judged
//! on a later period, and histories the models cannot read failing the run or set aside.

mod common;

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use common::{Project, published_run, sorted_rows};

const PIPELINE: &str = "pipelines/customer_segments.yaml";

fn run_folder(project: &Project) -> std::path::PathBuf {
    published_run(&project.path("out/customer_segments"), "2011-12-10")
}

fn floats(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|batch| {
            let array = batch
                .column_by_name(column)
                .unwrap_or_else(|| panic!("no column {column}"))
                .as_primitive::<Float64Type>()
                .clone();
            (0..array.len())
                .map(move |i| array.is_valid(i).then(|| array.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ints(batches: &[RecordBatch], column: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|batch| {
            let array = batch.column_by_name(column).unwrap();
            match array.data_type() {
                arrow::datatypes::DataType::Int32 => array
                    .as_primitive::<Int32Type>()
                    .values()
                    .iter()
                    .map(|v| i64::from(*v))
                    .collect::<Vec<_>>(),
                _ => array.as_primitive::<Int64Type>().values().to_vec(),
            }
        })
        .collect()
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{actual} is not {expected}"
    );
}

#[test]
fn every_customer_is_valued_and_the_segments_add_up_to_their_customers() {
    let project = Project::copy_of_repository();
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(0);
    assert!(run.stdout.contains("value  bg_nbd r="), "{}", run.stdout);
    let folder = run_folder(&project);
    let segments = common::table(&folder, "segments");
    let p_alive = floats(&segments, "p_alive");
    let clv = floats(&segments, "clv");
    let frequency = floats(&segments, "frequency");
    let ids = ints(&segments, "segment_id");
    assert_eq!(p_alive.len(), 1310);
    for ((p, value), x) in p_alive.iter().zip(&clv).zip(&frequency) {
        let (p, value) = (p.unwrap(), value.unwrap());
        assert!((0.0..=1.0).contains(&p), "{p}");
        // Under BG/NBD a customer without repeat purchases cannot have left yet.
        if *x == Some(0.0) {
            assert_eq!(p, 1.0);
        }
        assert!(value >= 0.0 && value.is_finite(), "{value}");
    }
    assert!(
        floats(&segments, "expected_spend")
            .iter()
            .all(|s| s.unwrap() > 0.0)
    );

    // Per segment: the customers and their CLV, summed from segments/ here.
    let mut by_id: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    for (id, value) in ids.iter().zip(&clv) {
        let entry = by_id.entry(*id).or_default();
        entry.0 += 1;
        entry.1 += value.unwrap();
    }
    let table = common::table(&folder, "value_by_segment");
    let table_ids = ints(&table, "segment_id");
    let customers = ints(&table, "customers");
    let totals = floats(&table, "total_clv");
    let shares = floats(&table, "value_share");
    for ((id, count), total) in table_ids.iter().zip(&customers).zip(&totals) {
        assert_eq!(by_id[id].0, *count, "segment {id}");
        close(total.unwrap(), by_id[id].1);
    }
    close(shares.iter().map(|s| s.unwrap()).sum(), 1.0);

    // The LTV table: 12 months per segment, its cumulative value the segment's CLV.
    let ltv = common::table(&folder, "ltv");
    let ltv_ids = ints(&ltv, "segment_id");
    let months = ints(&ltv, "month");
    let cumulative = floats(&ltv, "cumulative_value");
    assert_eq!(ltv_ids.len(), 12 * table_ids.len());
    for ((id, month), value) in ltv_ids.iter().zip(&months).zip(&cumulative) {
        if *month == 12 {
            close(value.unwrap(), by_id[id].1);
        }
    }
    let retention = floats(&ltv, "retention");
    assert!(retention.iter().all(|r| (0.0..=1.0).contains(&r.unwrap())));

    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("value_model.json")).unwrap())
            .unwrap();
    assert_eq!(model["purchase_model"]["model"], "bg_nbd");
    assert_eq!(model["purchase_model"]["converged"], true);
    assert_eq!(model["spend_model"]["model"], "gamma_gamma");
    assert_eq!(model["data"]["customers"], 1310);
    assert!(model["spend_model"]["params"]["q"].as_f64().unwrap() > 1.0);
}

#[test]
fn the_values_are_the_same_on_any_number_of_threads() {
    let project = Project::copy_of_repository();
    let tables = |threads: &str| {
        project
            .segflow_with_env(&["run", PIPELINE], &[("RAYON_NUM_THREADS", threads)])
            .assert_exit(0);
        let folder = run_folder(&project);
        let model: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(folder.join("value_model.json")).unwrap(),
        )
        .unwrap();
        (
            sorted_rows(&common::table(&folder, "segments")),
            sorted_rows(&common::table(&folder, "value_by_segment")),
            sorted_rows(&common::table(&folder, "ltv")),
            model["purchase_model"]["params"].clone(),
        )
    };
    let one = tables("1");
    let three = tables("3");
    assert!(one == three, "the values differ between 1 and 3 threads");
}

#[test]
fn the_model_is_judged_on_a_later_period_the_sql_measured() {
    let project = Project::copy_of_repository();
    project.calibrate_with_holdout("2011-06-11");
    // The freshness check would warn, the change check has no baseline: both pass.
    let run = project.segflow(&["run", PIPELINE, "--report-json", "report.json"]);
    run.assert_exit(0);
    assert!(run.stdout.contains("purchases predicted"), "{}", run.stdout);
    let folder = published_run(&project.path("out/customer_segments"), "2011-06-11");
    let table = common::table(&folder, "value_evaluation");
    let labels: Vec<String> = table
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("frequency").unwrap().as_string::<i32>();
            column
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(labels, ["0", "1", "2", "3", "4", "5", "6", "7+", "all"]);
    let customers = ints(&table, "customers");
    let actual = floats(&table, "actual_purchases");
    let predicted = floats(&table, "predicted_purchases");
    // The buckets add up to the whole.
    assert_eq!(customers[..8].iter().sum::<i64>(), customers[8]);
    close(
        actual[..8].iter().map(|a| a.unwrap()).sum(),
        actual[8].unwrap(),
    );
    close(
        predicted[..8].iter().map(|p| p.unwrap()).sum(),
        predicted[8].unwrap(),
    );
    // The holdout purchases, counted here from the segment input's own column.
    let segments = common::table(&folder, "segments");
    assert_eq!(customers[8] as usize, floats(&segments, "p_alive").len());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("report.json")).unwrap())
            .unwrap();
    let evaluation = &report["value"]["evaluation"];
    close(
        evaluation["actual_purchases"].as_f64().unwrap(),
        actual[8].unwrap(),
    );
    assert_eq!(evaluation["period_days"], 182.0);
    // A model that explains the data predicts the later period's purchases to within a
    // factor of two in total, and more for those who bought more before.
    let ratio = predicted[8].unwrap() / actual[8].unwrap();
    assert!((0.5..2.0).contains(&ratio), "predicted / actual = {ratio}");
    let mean = floats(&table, "mean_predicted_purchases");
    assert!(mean[0].unwrap() < mean[7].unwrap(), "{mean:?}");
    assert!(evaluation["mean_absolute_error"].as_f64().unwrap() > 0.0);
}

#[test]
fn histories_the_models_cannot_read_fail_the_run_or_are_set_aside() {
    let project = Project::copy_of_repository();
    // Every 40th customer's last purchase after the end of the period.
    project.replace_in(
        "sql/retail/customer_features.sql",
        "CAST(s.last_purchase - s.first_purchase AS BIGINT) AS recency,",
        "CASE WHEN s.customer_id % 40 = 0 AND s.frequency > 0 \
         THEN CAST(DATE '${as_of}' - s.first_purchase AS BIGINT) + 3 \
         ELSE CAST(s.last_purchase - s.first_purchase AS BIGINT) END AS recency,",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr
            .contains("have a history the models cannot read, e.g. ")
            && run.stderr.contains("(recency is larger than T")
            && run.stderr.contains("on_invalid: quarantine"),
        "{}",
        run.stderr
    );
    assert!(!project.path("out/customer_segments/_LATEST.json").exists());

    project.replace_in(
        PIPELINE,
        "  discount_rate: 0.01\n",
        "  discount_rate: 0.01\n  on_invalid: quarantine\n",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(0);
    let folder = run_folder(&project);
    let rejects = common::table(&folder, "rejects/value");
    let keys = ints(&rejects, "customer_id");
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|key| key % 40 == 0), "{keys:?}");
    let reasons: Vec<String> = rejects
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("reason").unwrap().as_string::<i32>();
            column
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        reasons.iter().all(|r| r.contains("larger than T")),
        "{reasons:?}"
    );
    assert!(
        run.stdout
            .contains(&format!("{} customers set aside: a history", keys.len())),
        "{}",
        run.stdout
    );
    // They are still segmented, without value.
    let segments = common::table(&folder, "segments");
    let customers = ints(&segments, "customer_id");
    let p_alive = floats(&segments, "p_alive");
    for (customer, p) in customers.iter().zip(&p_alive) {
        assert_eq!(p.is_none(), keys.contains(customer), "customer {customer}");
    }
}

#[test]
fn other_models_without_spend_and_value_columns_as_features() {
    let project = Project::copy_of_repository();
    // The example's churn is the same for every customer, which Pareto/NBD can only
    // approach with ever larger s and beta: a penalizer keeps them finite.
    project.replace_in(
        PIPELINE,
        "purchase_model: bg_nbd",
        "purchase_model: pareto_nbd\n  penalizer: 0.001",
    );
    project.replace_in(PIPELINE, "spend_model: gamma_gamma", "spend_model: none");
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("value  pareto_nbd r="),
        "{}",
        run.stdout
    );
    let folder = run_folder(&project);
    let segments = common::table(&folder, "segments");
    let schema = segments[0].schema();
    assert!(schema.column_with_name("p_alive").is_some());
    assert!(schema.column_with_name("expected_purchases").is_some());
    assert!(schema.column_with_name("clv").is_none());
    let table = common::table(&folder, "value_by_segment");
    assert!(table[0].schema().column_with_name("total_clv").is_none());
    // Pareto/NBD: a customer without repeat purchases may have left.
    let frequency = floats(&segments, "frequency");
    let p_alive = floats(&segments, "p_alive");
    assert!(
        frequency
            .iter()
            .zip(&p_alive)
            .any(|(x, p)| *x == Some(0.0) && p.unwrap() < 1.0)
    );

    // MBG/NBD, and the CLV clustered on as a feature.
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "purchase_model: bg_nbd",
        "purchase_model: mbg_nbd",
    );
    project.replace_in(
        PIPELINE,
        "    - { name: total_spend, transform: log1p, winsorize: [0, 0.99], role: monetary, unit: GBP }\n",
        "    - { name: total_spend, transform: log1p, winsorize: [0, 0.99], role: monetary, unit: GBP }\n    - { name: clv, transform: log1p }\n",
    );
    project.segflow(&["check", PIPELINE]).assert_exit(0);
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    let model: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_folder(&project).join("model.json")).unwrap(),
    )
    .unwrap();
    assert!(model.to_string().contains("\"clv\""), "{model}");
}

#[test]
fn customers_without_repeat_purchases_cannot_be_valued() {
    let project = Project::copy_of_repository();
    project.replace_in(
        "sql/retail/customer_features.sql",
        "    s.frequency,\n",
        "    0 * s.frequency AS frequency,\n",
    );
    project.replace_in(
        "sql/retail/customer_features.sql",
        "CAST(s.last_purchase - s.first_purchase AS BIGINT) AS recency,",
        "CAST(0 AS BIGINT) AS recency,",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("no customer has a repeat purchase"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_fit_that_does_not_converge_fails_with_the_hint_that_makes_it_converge() {
    // Pareto/NBD has no finite maximum-likelihood estimate on the example: its parameters
    // run off while the likelihood creeps up.
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "  purchase_model: bg_nbd\n",
        "  purchase_model: pareto_nbd\n",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr
            .contains("pareto_nbd did not converge on `customer_features`")
            && run.stderr.contains("raise `value.penalizer` (e.g. 0.001)"),
        "{}",
        run.stderr
    );
    assert!(!project.path("out/customer_segments/_LATEST.json").exists());
    // The hint holds.
    project.replace_in(
        PIPELINE,
        "  purchase_model: pareto_nbd\n",
        "  purchase_model: pareto_nbd\n  penalizer: 0.001\n",
    );
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    let model: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_folder(&project).join("value_model.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(model["purchase_model"]["converged"], true, "{model}");
}

/// Makes the example a pipeline without a segment stage: the value stage reads the
/// customer features itself and publishes to `out/customer_values`.
fn value_only(project: &Project) {
    let text = std::fs::read_to_string(project.path(PIPELINE)).unwrap();
    let segment = text
        .find("\nsegment:\n")
        .expect("the example has a segment stage");
    let text = text[..segment + 1].replacen(
        "\nvalue:\n",
        "\nvalue:\n  input: customer_features\n  key: customer_id\n  output: { store: output, path: customer_values }\n",
        1,
    );
    project.write(PIPELINE, &text);
}

#[test]
fn a_pipeline_without_segments_publishes_each_customers_value() {
    let segmented = Project::copy_of_repository();
    segmented.segflow(&["run", PIPELINE]).assert_exit(0);
    let segments = common::table(&run_folder(&segmented), "segments");

    let project = Project::copy_of_repository();
    value_only(&project);
    project.segflow(&["check", PIPELINE]).assert_exit(0);
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(0);
    assert!(run.stdout.contains("all customers"), "{}", run.stdout);
    let folder = published_run(&project.path("out/customer_values"), "2011-12-10");
    assert!(common::table_files(&folder, "segments").is_empty());
    assert!(common::table_files(&folder, "value_by_segment").is_empty());
    assert!(folder.join("value_model.json").exists());

    let values = common::table(&folder, "values");
    let schema = values[0].schema();
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        columns,
        [
            "customer_id",
            "frequency",
            "recency",
            "T",
            "monetary_value",
            "p_alive",
            "expected_purchases",
            "expected_spend",
            "clv",
            "run_id",
            "as_of"
        ]
    );
    // Every customer once, in key order, with the values the segmented run gave them.
    let keys = ints(&values, "customer_id");
    assert_eq!(keys.len(), 1310);
    assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
    let by_key = |batches: &[RecordBatch], column: &str| -> BTreeMap<i64, Option<f64>> {
        ints(batches, "customer_id")
            .into_iter()
            .zip(floats(batches, column))
            .collect()
    };
    for column in ["p_alive", "expected_purchases", "expected_spend", "clv"] {
        assert_eq!(
            by_key(&values, column),
            by_key(&segments, column),
            "{column}"
        );
    }

    // The LTV table covers every customer as one group.
    let ltv = common::table(&folder, "ltv");
    assert_eq!(ints(&ltv, "segment_id"), vec![0; 12]);
    let names = ltv[0].column_by_name("name").unwrap().as_string::<i32>();
    assert!(names.iter().all(|name| name == Some("all customers")));
    let total: f64 = floats(&values, "clv").iter().map(|v| v.unwrap()).sum();
    close(floats(&ltv, "cumulative_value")[11].unwrap(), total);

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("_MANIFEST.json")).unwrap())
            .unwrap();
    let values_table = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|table| table["name"] == "values")
        .unwrap_or_else(|| panic!("no values table in {manifest}"));
    assert_eq!(values_table["rows"], 1310);
}
