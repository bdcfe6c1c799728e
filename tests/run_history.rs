//! Runs judged against the runs before them: failing-row thresholds by share and by count,
//! `change` checks against the previous run's manifest, and run order (a backfill neither
//! becomes the latest run nor the baseline of later days), and `--if-changed` against the
//! latest published run.

mod common;

use common::{Project, published_run};

/// Customers with a null e-mail: `nulls` of `customers`, spread through the file.
fn customers_csv(customers: usize, nulls: usize) -> String {
    let mut csv = String::from("customer_id,email,x,y\n");
    let every = customers / nulls.max(1);
    for id in 0..customers {
        let email = if nulls > 0 && id % every == 0 && id / every < nulls {
            String::new()
        } else {
            format!("c{id}@example.com")
        };
        let (x, y) = if id % 2 == 0 { (1.0, 1.0) } else { (9.0, 9.0) };
        let jitter = (id % 7) as f64 / 10.0;
        csv.push_str(&format!("{id},{email},{},{}\n", x + jitter, y - jitter));
    }
    csv
}

fn thresholds_pipeline(check: &str) -> String {
    format!(
        r#"name: thresholds
stores:
  data: {{ url: "file://../data" }}
  out: {{ url: "file://../out" }}
sources:
  - name: customers
    store: data
    path: customers.csv
    format: csv
    schema:
      - {{ name: customer_id, type: int64 }}
      - {{ name: email, type: string }}
      - {{ name: x, type: float64 }}
      - {{ name: y, type: float64 }}
steps:
  - name: checked
    kind: validate
    input: customers
    checks:
      - {{ type: not_null, column: email, {check} }}
segment:
  input: checked
  key: customer_id
  features: [x, y]
  k: 2
  output: {{ store: out, path: thresholds }}
"#
    )
}

#[test]
fn failing_rows_warn_or_fail_by_their_share_or_count() {
    let project = Project::copy_of_repository();
    // 30 of 1,000 customers (3.0%) have no e-mail.
    project.write("data/customers.csv", &customers_csv(1000, 30));
    let cases = [
        (r#"error_if: "> 5%""#, 0, "warn"),
        (r#"error_if: ">= 3%""#, 4, "fail"),
        (r#"error_if: "> 30""#, 0, "warn"),
        (r#"error_if: "> 29""#, 4, "fail"),
        (r#"severity: warn, warn_if: "> 5%""#, 0, "pass"),
        (
            r#"severity: quarantine, error_if: "> 5%""#,
            0,
            "quarantined",
        ),
        (r#"severity: quarantine, error_if: "> 2.5%""#, 4, "fail"),
    ];
    for (check, code, status) in cases {
        project.write("pipelines/t.yaml", &thresholds_pipeline(check));
        let run = project.segflow(&[
            "run",
            "pipelines/t.yaml",
            "--run-id",
            "r",
            "--report-json",
            "report.json",
        ]);
        run.assert_exit(code);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(project.path("report.json")).unwrap())
                .unwrap();
        let judged = &report["steps"][0]["checks"][0];
        assert_eq!(judged["status"], status, "{check}: {judged}");
        assert_eq!(judged["failing_rows"], 30, "{check}");
        assert_eq!(judged["rows_checked"], 1000, "{check}");
        assert_eq!(judged["failing_share"], 0.03, "{check}");
        let published = project.path("out/thresholds/run_id=r/_SUCCESS").exists();
        assert_eq!(
            published,
            code == 0,
            "{check}: published only when it passed"
        );
        if code == 0 {
            assert!(
                run.stdout.contains("30 failing (3.0% of 1,000;"),
                "{}",
                run.stdout
            );
        }
        std::fs::remove_dir_all(project.path("out")).ok();
    }
    // The quarantined rows are set aside when the run goes on: every row accounted for.
    project.write(
        "pipelines/t.yaml",
        &thresholds_pipeline(r#"severity: quarantine, error_if: "> 5%""#),
    );
    project
        .segflow(&["run", "pipelines/t.yaml", "--run-id", "r"])
        .assert_exit(0);
    let rejects = common::table(
        &published_run(&project.path("out/thresholds"), "r"),
        "rejects/checked",
    );
    assert_eq!(rejects.iter().map(|b| b.num_rows()).sum::<usize>(), 30);
}

/// The example pipeline with its `change` check made stricter: the row count may move 20%
/// either way between runs, and the distinct customers fall by at most 100 (a warning).
fn with_change_checks(project: &Project) {
    project.replace_in(
        "pipelines/customer_segments.yaml",
        "        metric: row_count\n        max_decrease: \"30%\"\n",
        r#"        metric: row_count
        max_decrease: "20%"
        max_increase: "20%"
      - type: change
        metric: distinct
        column: customer_id
        max_decrease: 100
        severity: warn
"#,
    );
}

fn latest_run(project: &Project) -> String {
    let latest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path("out/customer_segments/_LATEST.json")).unwrap(),
    )
    .unwrap();
    latest["run_id"].as_str().unwrap().to_string()
}

fn manifest_metrics(project: &Project, run_id: &str) -> serde_json::Value {
    let manifest =
        published_run(&project.path("out/customer_segments"), run_id).join("_MANIFEST.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    manifest["metrics"].clone()
}

#[test]
fn a_drop_against_the_previous_run_fails_and_a_backfill_is_neither_latest_nor_baseline() {
    let project = Project::copy_of_repository();
    with_change_checks(&project);
    let pipeline = "pipelines/customer_segments.yaml";
    let day = |as_of: &str| project.segflow(&["run", pipeline, "--var", &format!("as_of={as_of}")]);
    let export = project.path("fixtures/retail/transactions.csv");
    let full = std::fs::read_to_string(&export).unwrap();
    // The same export with its last 40% of lines lost on the way.
    let lines: Vec<&str> = full.lines().collect();
    let damaged = lines[..lines.len() * 6 / 10].join("\n") + "\n";

    let first = day("2011-12-10");
    first.assert_exit(0);
    assert!(
        first
            .stdout
            .contains("row_count is 25918; no baseline: no earlier published run"),
        "{}",
        first.stdout
    );
    let metrics = manifest_metrics(&project, "2011-12-10");
    assert_eq!(
        metrics,
        serde_json::json!([
            {"table": "clean_transactions", "metric": "distinct(customer_id)", "value": 1310.0},
            {"table": "clean_transactions", "metric": "row_count", "value": 25918.0},
        ])
    );

    std::fs::write(&export, &damaged).unwrap();
    let dropped = day("2011-12-11");
    dropped.assert_exit(4);
    assert!(
        dropped.stderr.contains(
            "check `change_row_count` (change): row_count is 15547 against 25918 in run 2011-12-10 (-40.0%): more than the max_decrease of 20% allowed"
        ),
        "{}",
        dropped.stderr
    );
    assert!(
        !project
            .path("out/customer_segments/run_id=2011-12-11")
            .exists()
    );
    assert_eq!(latest_run(&project), "2011-12-10");

    // A backfill of an earlier day on the damaged export: nothing before it to compare with.
    let backfill = day("2011-12-09");
    backfill.assert_exit(0);
    assert!(
        backfill
            .stdout
            .contains("no baseline: no earlier published run")
    );
    assert!(
        backfill
            .stdout
            .contains("a backfill: _LATEST.json still names run 2011-12-10, later in run order"),
        "{}",
        backfill.stdout
    );
    assert_eq!(latest_run(&project), "2011-12-10");

    // The next day compares with 2011-12-10, the run before it, not with the backfill
    // written last (against which it would be 66% up).
    std::fs::write(&export, &full).unwrap();
    let next = day("2011-12-11");
    next.assert_exit(0);
    assert!(
        next.stdout
            .contains("row_count is 25918 against 25918 in run 2011-12-10 (+0.0%)"),
        "{}",
        next.stdout
    );
    assert_eq!(latest_run(&project), "2011-12-11");

    // A rerun of the backfilled day compares with nothing but runs before it.
    let rerun = day("2011-12-09");
    rerun.assert_exit(0);
    assert!(rerun.stdout.contains("no baseline"), "{}", rerun.stdout);
    let runs = project.segflow(&["runs", pipeline]);
    let order: Vec<&str> = runs
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.starts_with("2011-"))
        .collect();
    assert_eq!(
        order,
        ["2011-12-11", "2011-12-10", "2011-12-09"],
        "{}",
        runs.stdout
    );
}

#[test]
fn a_failed_run_still_writes_its_report_with_the_status_and_the_error() {
    let project = Project::copy_of_repository();
    project.write("data/customers.csv", &customers_csv(1000, 30));
    let report = |project: &Project| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(project.path("report.json")).unwrap())
            .unwrap()
    };
    let run = |project: &Project, extra: &[&str]| {
        let mut args = vec!["run", "pipelines/t.yaml", "--report-json", "report.json"];
        args.extend_from_slice(extra);
        project.segflow(&args)
    };

    project.write("pipelines/t.yaml", &thresholds_pipeline("severity: warn"));
    run(&project, &["--run-id", "ok"]).assert_exit(0);
    let succeeded = report(&project);
    assert_eq!(succeeded["status"], "success");
    assert_eq!(succeeded["schema_version"], 3);
    assert_eq!(succeeded["error"], serde_json::Value::Null);
    assert_eq!(succeeded["segflow_version"], env!("CARGO_PKG_VERSION"));

    // Invalid: the pipeline does not load; its file stands for its name.
    project.write(
        "pipelines/t.yaml",
        &thresholds_pipeline("severity: warn").replace("  k: 2\n", "  k: 2\n  kk: 3\n"),
    );
    run(&project, &["--run-id", "bad"]).assert_exit(3);
    let invalid = report(&project);
    assert_eq!(invalid["status"], "invalid");
    assert_eq!(invalid["pipeline"], "pipelines/t.yaml");
    assert_eq!(invalid["run_id"], "bad");
    assert!(
        invalid["error"].as_str().unwrap().contains("`kk`"),
        "{invalid}"
    );

    // Validation failed: the failing check is in the report, and no id was given, so the
    // report names the id the run chose.
    project.write("pipelines/t.yaml", &thresholds_pipeline("severity: error"));
    run(&project, &[]).assert_exit(4);
    let failed = report(&project);
    assert_eq!(failed["status"], "validation_failed");
    assert_eq!(failed["pipeline"], "thresholds");
    let chosen = failed["run_id"].as_str().unwrap();
    let (time, pid) = chosen.split_once("Z-").unwrap();
    assert!(
        time.len() == 15 && time.as_bytes()[8] == b'T' && pid.parse::<u32>().is_ok(),
        "a default id is the start time and process id: {chosen}"
    );
    assert_eq!(failed["steps"][0]["checks"][0]["status"], "fail");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("check `not_null_email` (not_null): 30 failing rows"),
        "{failed}"
    );
    assert_eq!(failed["outputs"], serde_json::json!([]));

    // A runtime error: the output folder's place is taken by a file.
    std::fs::remove_dir_all(project.path("out")).ok();
    project.write("out/thresholds", "not a folder");
    project.write("pipelines/t.yaml", &thresholds_pipeline("severity: warn"));
    let broke = run(&project, &["--run-id", "r", "--log-format", "json"]);
    broke.assert_exit(1);
    assert_eq!(report(&project)["status"], "runtime_error");
    // Under --log-format json the last line of stderr is the error, as JSON.
    let last: serde_json::Value =
        serde_json::from_str(broke.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["fields"]["status"], "runtime_error");
    assert_eq!(last["fields"]["exit_code"], 1);
    assert_eq!(last["fields"]["message"], report(&project)["error"]);
    assert!(
        last["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("out/thresholds"),
        "{last}"
    );
}

/// The thresholds pipeline with a clean step in front of the segments, and contracts.
fn contract_pipeline(step_contract: &str, segment_contract: &str, carry: &str) -> String {
    thresholds_pipeline("severity: warn")
        .replace(
            "steps:\n",
            &format!(
                "steps:\n  - name: typed\n    kind: clean\n    sql: SELECT customer_id, email, x, y FROM customers\n    contract:\n{step_contract}"
            ),
        )
        .replace("    input: customers\n", "    input: typed\n")
        .replace(
            "  k: 2\n",
            &format!("  k: 2\n  carry: [{carry}]\n  contract:\n{segment_contract}"),
        )
}

const TYPED: &str = "      columns:
        - { name: customer_id, type: int64, nullable: false }
        - { name: email, type: string, nullable: NULLABLE }
        - { name: x, type: float64 }
        - { name: y, type: float64 }
";

fn segments_contract(on_drift: &str, with_email: bool) -> String {
    let mut text = format!(
        "    on_drift: {on_drift}
    columns:
      - {{ name: customer_id, type: int64, nullable: false }}
      - {{ name: segment_id, type: int32 }}
      - {{ name: segment_name, type: string }}
      - {{ name: distance, type: float64 }}
      - {{ name: x, type: float64 }}
      - {{ name: y, type: float64 }}
"
    );
    if with_email {
        text.push_str("      - { name: email, type: string }\n");
    }
    text
}

#[test]
fn contracts_are_kept_on_the_data_and_against_the_previous_runs_schema() {
    let project = Project::copy_of_repository();
    project.write("data/customers.csv", &customers_csv(1000, 30));
    let run = |id: &str| project.segflow(&["run", "pipelines/c.yaml", "--run-id", id]);

    // Planned schemas keep the contracts, but 30 rows break `email: nullable: false`.
    project.write(
        "pipelines/c.yaml",
        &contract_pipeline(
            &TYPED.replace("NULLABLE", "false"),
            &segments_contract("fail", false),
            "",
        ),
    );
    project
        .segflow(&["check", "pipelines/c.yaml"])
        .assert_exit(0);
    let nulls = run("d1");
    nulls.assert_exit(4);
    assert!(
        nulls.stderr.contains(
            "contract of `typed` broken: column `email` holds 30 nulls; the contract says it holds none"
        ),
        "{}",
        nulls.stderr
    );
    assert!(!project.path("out/thresholds/run_id=d1").exists());

    project.write(
        "pipelines/c.yaml",
        &contract_pipeline(
            &TYPED.replace("NULLABLE", "true"),
            &segments_contract("fail", false),
            "",
        ),
    );
    run("d1").assert_exit(0);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            published_run(&project.path("out/thresholds"), "d1").join("_MANIFEST.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let segments = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|table| table["name"] == "segments")
        .unwrap();
    assert_eq!(manifest["schema_version"], 4);
    assert_eq!(
        segments["columns"][0],
        serde_json::json!({"name": "customer_id", "type": "int64", "nullable": false, "null_count": 0})
    );

    // The next day carries e-mails into the segments: a new column, which `fail` refuses
    // and `allow_new_columns` accepts.
    let with_email = |rule: &str| {
        contract_pipeline(
            &TYPED.replace("NULLABLE", "true"),
            &segments_contract(rule, true),
            "email",
        )
    };
    project.write("pipelines/c.yaml", &with_email("fail"));
    let drifted = run("d2");
    drifted.assert_exit(4);
    assert!(
        drifted.stderr.contains(
            "contract of `segments` broken: `segments` since run d1: column `email` is new"
        ),
        "{}",
        drifted.stderr
    );
    assert!(!project.path("out/thresholds/run_id=d2").exists());
    project.write("pipelines/c.yaml", &with_email("allow_new_columns"));
    run("d2").assert_exit(0);
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

#[test]
fn if_changed_skips_a_run_that_would_read_the_same_and_runs_after_one_file_changed() {
    let project = Project::copy_of_repository();
    // The customers in two files of one folder.
    let csv = customers_csv(1000, 0);
    let (header, rows) = csv.split_once('\n').unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    let part = |lines: &[&str]| format!("{header}\n{}\n", lines.join("\n"));
    project.write("data/customers/part-1.csv", &part(&lines[..500]));
    project.write("data/customers/part-2.csv", &part(&lines[500..]));
    project.write(
        "pipelines/t.yaml",
        &thresholds_pipeline("severity: warn").replace("path: customers.csv", "path: customers/"),
    );
    let report_path = project.path("report.json");
    let run = |run_id: &str| {
        let run = project.segflow(&[
            "run",
            "pipelines/t.yaml",
            "--if-changed",
            "--run-id",
            run_id,
            "--report-json",
            "report.json",
        ]);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
        (run, report)
    };
    let output = project.path("out/thresholds");
    let latest = || -> String {
        let latest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(output.join("_LATEST.json")).unwrap())
                .unwrap();
        latest["run_id"].as_str().unwrap().to_string()
    };

    // Nothing published yet: it runs, and its manifest records both files.
    let (first, report) = run("2011-12-09");
    first.assert_exit(0);
    assert_eq!(report["status"], "success");
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{report}");
    assert!(
        changes[0]
            .as_str()
            .unwrap()
            .starts_with("no run is published in "),
        "{report}"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(published_run(&output, "2011-12-09").join("_MANIFEST.json"))
            .unwrap(),
    )
    .unwrap();
    let inputs = manifest["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2, "{manifest:#}");
    for (input, name) in inputs.iter().zip(["part-1.csv", "part-2.csv"]) {
        let file = project.path("data/customers").join(name);
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(input["source"], "customers");
        let url = input["url"].as_str().unwrap();
        assert!(
            url.starts_with("file:///") && url.ends_with(name),
            "{input}"
        );
        assert_eq!(input["bytes"], bytes.len() as u64);
        assert_eq!(input["content_hash"], sha256(&bytes));
        assert!(input["last_modified"].as_str().unwrap().ends_with('Z'));
        assert!(input["e_tag"].is_string(), "{input}");
    }

    // A file written again with the same bytes (a new modification time) changes nothing:
    // the run says which run is current, exits 0 and publishes nothing.
    std::thread::sleep(std::time::Duration::from_millis(20));
    project.write("data/customers/part-2.csv", &part(&lines[500..]));
    let (skipped, report) = run("2011-12-10");
    skipped.assert_exit(0);
    assert!(
        skipped
            .stdout
            .contains("unchanged: run 2011-12-09 is current"),
        "{}",
        skipped.stdout
    );
    assert_eq!(report["status"], "unchanged");
    assert_eq!(report["latest_run"], "2011-12-09");
    assert_eq!(report["changes"], serde_json::json!([]));
    assert!(!output.join("run_id=2011-12-10").exists());
    assert_eq!(latest(), "2011-12-09");

    // One file's content changes, its size does not: the run goes ahead and says why.
    let edited = part(&lines[500..]).replacen("c501@example.com", "d501@example.com", 1);
    project.write("data/customers/part-2.csv", &edited);
    let (ran, report) = run("2011-12-10");
    ran.assert_exit(0);
    assert_eq!(report["status"], "success");
    let url = inputs[1]["url"].as_str().unwrap();
    assert_eq!(
        report["changes"],
        serde_json::json!([format!("input file {url}: its content changed")])
    );
    assert!(ran.stdout.contains("its content changed"), "{}", ran.stdout);
    assert_eq!(latest(), "2011-12-10");

    // Once published, that run is the current one; a new file, or an edit of the
    // pipeline, makes the next run go ahead.
    let (skipped, report) = run("2011-12-11");
    skipped.assert_exit(0);
    assert_eq!(report["latest_run"], "2011-12-10");
    project.write(
        "data/customers/part-3.csv",
        &part(&["1000,c1000@example.com,1.0,1.0"]),
    );
    let (ran, report) = run("2011-12-11");
    ran.assert_exit(0);
    let new_file = url.replace("part-2.csv", "part-3.csv");
    assert_eq!(
        report["changes"],
        serde_json::json!([format!("input file {new_file} is new")])
    );
    std::fs::remove_file(project.path("data/customers/part-3.csv")).unwrap();
    project.replace_in("pipelines/t.yaml", "  k: 2\n", "  k: 3\n");
    let (ran, report) = run("2011-12-12");
    ran.assert_exit(0);
    assert_eq!(
        report["changes"],
        serde_json::json!([
            "the pipeline (its YAML or a SQL file it reads) changed since run `2011-12-11`",
            format!("input file {new_file} is gone"),
        ])
    );
}
