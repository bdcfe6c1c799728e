//! Bucketing is an execution strategy, never a change of results: a run whose steps keep
//! customers apart bucket by bucket (`partition_key`, `--buckets N`) publishes the rows,
//! segments, values, rejects and row accounting a run over whole tables does.

mod common;

use common::Project;
use serde_json::Value;

/// Every published table of a run (as its manifest lists them), each as its sorted rows
/// without the run's columns.
fn published_tables(project: &Project, output: &str) -> Vec<(String, Vec<String>)> {
    let version = common::published(&project.path(output));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(version.join("_MANIFEST.json")).unwrap())
            .unwrap();
    let mut names: Vec<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|file| file["table"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|table| {
            let batches = common::without_run_columns(&common::table(&version, &table));
            (table, common::sorted_rows(&batches))
        })
        .collect()
}

/// The project with the bench pipeline and `rows` generated lines as
/// `bench/data/generated.parquet`.
fn generated_project(rows: u64, seed: u64) -> Project {
    let project = common::bench_project();
    let (rows, seed) = (rows.to_string(), seed.to_string());
    project
        .segflow(&[
            "generate",
            "bench/data/generated.parquet",
            "--format",
            "parquet",
            "--rows",
            &rows,
            "--seed",
            &seed,
        ])
        .assert_exit(0);
    project
}

fn report(project: &Project, file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(project.path(file)).unwrap()).unwrap()
}

/// What a run report says about rows and checks: every count, status and detail, without
/// times, paths, or the failing rows shown as examples (any rows that fail).
fn accounting(report: &Value) -> Value {
    let steps: Vec<Value> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            let checks: Vec<Value> = step["checks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|check| {
                    let mut check = check.clone();
                    check.as_object_mut().unwrap().remove("samples");
                    check
                })
                .collect();
            serde_json::json!({
                "name": step["name"],
                "rows_in": step["rows_in"],
                "rows_out": step["rows_out"],
                "rows_removed": step["rows_removed"],
                "rows_quarantined": step["rows_quarantined"],
                "checks": checks,
            })
        })
        .collect();
    let sources: Vec<Value> = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|source| {
            serde_json::json!({
                "name": source["name"],
                "rows_read": source["rows_read"],
                "rows_out": source["rows_out"],
                "rows_quarantined": source["rows_quarantined"],
            })
        })
        .collect();
    serde_json::json!({
        "sources": sources,
        "steps": steps,
        "segment_sizes": report["segment"]["sizes"],
        "segment_names": report["segment"]["names"],
        "customers_valued": report["value"]["customers"],
    })
}

/// Runs `pipeline` in `buckets` buckets into the output `name` (report `name.json`), with
/// `vars` and other arguments `more`.
fn run_with(
    project: &Project,
    pipeline: &str,
    (buckets, name): (&str, &str),
    vars: &[&str],
    more: &[&str],
) -> Value {
    let output = format!("output=file://../{name}");
    let json = format!("{name}.json");
    let mut args = vec![
        "run",
        pipeline,
        "--buckets",
        buckets,
        "--var",
        &output,
        "--report-json",
        &json,
    ];
    for var in vars {
        args.extend(["--var", var]);
    }
    args.extend(more);
    project.segflow(&args).assert_exit(0);
    report(project, &json)
}

fn run(project: &Project, pipeline: &str, buckets: &str, name: &str, vars: &[&str]) -> Value {
    run_with(project, pipeline, (buckets, name), vars, &[])
}

#[test]
fn the_example_in_buckets_publishes_what_a_whole_run_does() {
    let project = Project::copy_of_repository();
    let pipeline = "pipelines/customer_segments.yaml";
    let whole = run(&project, pipeline, "1", "whole", &[]);
    let bucketed = run(&project, pipeline, "7", "bucketed", &[]);

    assert!(whole.get("buckets").is_none(), "{whole:#}");
    let buckets = &bucketed["buckets"];
    assert_eq!(buckets["count"], 7);
    assert_eq!(buckets["sources"][0]["name"], "raw_transactions");
    assert_eq!(buckets["sources"][0]["key"], "customer_id");
    let rows: Vec<u64> = buckets["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rows| rows.as_u64().unwrap())
        .collect();
    // The quarantining source's kept lines, every one in one bucket.
    assert_eq!(rows.iter().sum::<u64>(), 29_897);
    assert!(rows.iter().all(|&rows| rows > 0), "{rows:?}");
    assert_eq!(
        buckets["steps"],
        serde_json::json!([
            "clean_transactions",
            "valid_transactions",
            "daily_purchases",
            "customer_refunds",
            "customer_features"
        ])
    );

    assert_eq!(accounting(&bucketed), accounting(&whole));
    let tables = published_tables(&project, "whole/customer_segments");
    let names: Vec<&str> = tables.iter().map(|(name, _)| name.as_str()).collect();
    for table in [
        "segments",
        "rejects/valid_transactions",
        "rejects/raw_transactions",
        "ltv",
    ] {
        assert!(names.contains(&table), "{names:?}");
    }
    assert_eq!(
        published_tables(&project, "bucketed/customer_segments"),
        tables
    );
}

#[test]
fn a_generated_export_in_buckets_is_segmented_as_a_whole_run_does() {
    let project = generated_project(3_000_000, 7);
    let pipeline = common::BENCH_PIPELINE;
    let vars = ["transactions=generated.parquet"];
    let whole = run(&project, pipeline, "1", "whole", &vars);
    let bucketed = run(&project, pipeline, "5", "bucketed", &vars);
    assert_eq!(bucketed["buckets"]["count"], 5);
    assert_eq!(bucketed["buckets"]["sources"][0]["key"], "CustomerID");
    assert_eq!(bucketed["buckets"]["sources"][0]["rows"], 3_000_000);
    assert_eq!(accounting(&bucketed), accounting(&whole));
    assert_eq!(
        published_tables(&project, "bucketed/customer_segments"),
        published_tables(&project, "whole/customer_segments")
    );
}

#[test]
fn a_check_only_whole_tables_can_judge_ends_the_bucketed_steps_and_changes_nothing() {
    let project = Project::copy_of_repository();
    let pipeline = "pipelines/customer_segments.yaml";
    project.replace_in(
        pipeline,
        "      - type: row_count\n        min: 1000\n",
        "      - name: one_country_per_invoice\n        type: sql\n        severity: warn\n        sql: |\n          SELECT invoice_no FROM clean_transactions\n          GROUP BY invoice_no HAVING count(DISTINCT country) > 1\n      - type: row_count\n        min: 1000\n",
    );
    let plan = project.segflow(&["plan", pipeline]);
    plan.assert_exit(0);
    assert!(
        plan.stdout.contains(
            "valid_transactions  whole     check at steps[1].checks[4]: check `one_country_per_invoice`: an sql check runs its own query over whole tables"
        ),
        "{}",
        plan.stdout
    );
    let whole = run(&project, pipeline, "1", "whole", &[]);
    let bucketed = run(&project, pipeline, "3", "bucketed", &[]);
    assert_eq!(
        bucketed["buckets"]["steps"],
        serde_json::json!(["clean_transactions"])
    );
    assert_eq!(accounting(&bucketed), accounting(&whole));
    assert_eq!(
        published_tables(&project, "bucketed/customer_segments"),
        published_tables(&project, "whole/customer_segments")
    );
}

#[test]
fn rows_without_a_key_share_a_bucket_when_a_step_groups_them() {
    let project = Project::copy_of_repository();
    let pipeline = "pipelines/customer_segments.yaml";
    // Guest lines (no customer_id) are one group here: they must not be dealt out.
    project.replace_in(
        pipeline,
        "  - name: daily_purchases\n",
        "  - name: lines_per_customer\n    kind: clean\n    publish: true\n    sql: |\n      SELECT customer_id, count(*) AS lines FROM raw_transactions GROUP BY customer_id\n\n  - name: daily_purchases\n",
    );
    let plan = project.segflow(&["plan", pipeline]);
    plan.assert_exit(0);
    assert!(
        plan.stdout
            .contains("by customer_id (text read as BIGINT, as clean_transactions casts it); rows without a key in the first bucket"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("lines_per_customer  bucketed  key in customer_id"),
        "{}",
        plan.stdout
    );
    let whole = run(&project, pipeline, "1", "whole", &[]);
    let bucketed = run(&project, pipeline, "4", "bucketed", &[]);
    assert_eq!(bucketed["buckets"]["null_keys_spread"], false);
    assert_eq!(accounting(&bucketed), accounting(&whole));
    let tables = published_tables(&project, "whole/customer_segments");
    let guests: Vec<&String> = tables
        .iter()
        .find(|(name, _)| name == "lines_per_customer")
        .expect("the step is published")
        .1
        .iter()
        .filter(|row| row.starts_with("|             |"))
        .collect();
    assert_eq!(guests.len(), 1, "one row for the lines without a customer");
    assert_eq!(
        published_tables(&project, "bucketed/customer_segments"),
        tables
    );
}

#[test]
fn in_buckets_a_run_holds_in_memory_what_spills_whole() {
    let project = generated_project(1_000_000, 42);
    let pipeline = common::BENCH_PIPELINE;
    let vars = ["transactions=generated.parquet"];
    let limited = |buckets: &str, name: &str| {
        run_with(
            &project,
            pipeline,
            (buckets, name),
            &vars,
            &["--memory-limit", "200MB"],
        )
    };
    let spilled = |report: &Value| -> Vec<String> {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|step| step["spilled"] == true)
            .map(|step| step["name"].as_str().unwrap().to_string())
            .collect()
    };
    let whole = limited("1", "whole");
    // The flagged lines of 1M do not fit 200 MB: written to disk and read back.
    assert_eq!(spilled(&whole), ["valid_transactions"]);
    let bucketed = limited("8", "bucketed");
    assert!(spilled(&bucketed).is_empty(), "{bucketed:#}");
    assert_eq!(accounting(&bucketed), accounting(&whole));
    assert_eq!(
        published_tables(&project, "bucketed/customer_segments"),
        published_tables(&project, "whole/customer_segments")
    );
}

#[test]
fn a_lookup_table_joined_in_every_bucket_is_counted_once() {
    let project = Project::copy_of_repository();
    let pipeline = "pipelines/customer_segments.yaml";
    project.write(
        "fixtures/retail/regions.csv",
        "country,region\nUnited Kingdom,UK\nFrance,EU\nGermany,EU\nEIRE,EU\nSpain,EU\n",
    );
    project.replace_in(
        pipeline,
        "steps:\n",
        "  - name: regions\n    store: fixtures\n    path: retail/regions.csv\n    format: csv\n    csv:\n      has_header: true\n\nsteps:\n",
    );
    project.replace_in(
        pipeline,
        "  - name: daily_purchases\n",
        "  - name: lines_by_region\n    kind: merge\n    publish: true\n    sql: |\n      SELECT v.customer_id, v.invoice_no, r.region\n      FROM valid_transactions v JOIN regions r ON v.country = r.country\n\n  - name: daily_purchases\n",
    );
    let plan = project.segflow(&["plan", pipeline]);
    plan.assert_exit(0);
    assert!(
        plan.stdout
            .contains("lines_by_region     bucketed  key in customer_id"),
        "{}",
        plan.stdout
    );
    let whole = run(&project, pipeline, "1", "whole", &[]);
    let bucketed = run(&project, pipeline, "6", "bucketed", &[]);
    let step = |report: &Value| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|step| step["name"] == "lines_by_region")
            .cloned()
            .unwrap()
    };
    // Its valid lines and the five regions, once.
    assert_eq!(
        step(&whole)["rows_in"].as_u64(),
        Some(25_894 + 5),
        "{:#}",
        step(&whole)
    );
    assert_eq!(accounting(&bucketed), accounting(&whole));
    assert_eq!(
        published_tables(&project, "bucketed/customer_segments"),
        published_tables(&project, "whole/customer_segments")
    );
}
