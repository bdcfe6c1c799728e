//! What a user sees when a run cannot succeed: the exit code that tells a scheduler whose
//! problem it is, a message naming the step and file, and published outputs left as they were.

mod common;

use common::Project;

const PIPELINE: &str = "pipelines/customer_segments.yaml";

#[test]
fn unknown_column_is_a_pipeline_error_naming_step_and_file() {
    let project = Project::copy_of_repository();
    project.replace_in(
        "sql/retail/daily_purchases.sql",
        "sum(amount)",
        "sum(amout)",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(3);
    assert!(
        run.stderr.contains("step `daily_purchases`")
            && run.stderr.contains("sql/retail/daily_purchases.sql")
            && run.stderr.contains("amout"),
        "{}",
        run.stderr
    );
    assert!(
        !project
            .path("out/customer_segments/run_id=2011-12-10/_SUCCESS")
            .exists()
    );
}

#[test]
fn unknown_table_is_caught_before_anything_runs() {
    let project = Project::copy_of_repository();
    project.replace_in(
        "sql/retail/daily_purchases.sql",
        "FROM valid_transactions",
        "FROM valid_transaction",
    );
    let run = project.segflow(&["check", PIPELINE]);
    run.assert_exit(3);
    assert!(
        run.stderr.contains("reads table `valid_transaction`, which no source or step defines (did you mean `valid_transactions`?)"),
        "{}",
        run.stderr
    );
}

#[test]
fn yaml_mistake_names_file_line_and_key() {
    let project = Project::copy_of_repository();
    project.replace_in(PIPELINE, "  k: 5\n", "  k: 5\n  seeed: 1\n");
    let text = std::fs::read_to_string(project.path(PIPELINE)).unwrap();
    let line = 1 + text.lines().position(|l| l.contains("seeed")).unwrap();
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(3);
    let expected = format!(
        "error: {PIPELINE}:{line}:3: segment.seeed: unknown key `seeed` (did you mean `seed`?); expected one of input, key, features,"
    );
    assert!(run.stderr.starts_with(&expected), "{}", run.stderr);
}

#[test]
fn missing_source_file_is_a_runtime_error_naming_the_source() {
    let project = Project::copy_of_repository();
    std::fs::remove_file(project.path("fixtures/retail/transactions.csv")).unwrap();
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(1);
    assert!(
        run.stderr.contains("source `raw_transactions`") && run.stderr.contains("transactions.csv"),
        "{}",
        run.stderr
    );
}

#[test]
fn repeated_segment_key_fails_validation() {
    let project = Project::copy_of_repository();
    project.without_value_stage();
    // Many customers share a frequency.
    project.replace_in(PIPELINE, "  key: customer_id\n", "  key: frequency\n");
    project.replace_in(
        PIPELINE,
        "    - { name: frequency, transform: log1p, role: frequency, unit: repeat purchase days }\n",
        "",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr
            .contains("key `frequency` of `customer_features` must identify one customer per row"),
        "{}",
        run.stderr
    );
}

#[test]
fn non_numeric_feature_is_a_pipeline_error() {
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "  features:\n",
        "  features:\n    - first_purchase\n",
    );
    project.replace_in(
        PIPELINE,
        "refund_value, first_purchase, last_purchase]",
        "refund_value, last_purchase]",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(3);
    assert!(
        run.stderr
            .contains("segment.features[0]: feature `first_purchase` of `customer_features` is Date32, not a number"),
        "{}",
        run.stderr
    );
}

#[test]
fn failed_run_leaves_the_previous_outputs_published() {
    let project = Project::copy_of_repository();
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    let profile = std::fs::read(
        &common::table_files(
            &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
            "profile",
        )[0],
    )
    .unwrap();

    // k larger than the number of customers fails in the segment stage, after every step ran.
    project.replace_in(PIPELINE, "  k: 5\n", "  k: 100000\n");
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("cannot form 100000 segments"),
        "{}",
        run.stderr
    );

    assert!(
        project
            .path("out/customer_segments/run_id=2011-12-10/_SUCCESS")
            .exists()
    );
    assert_eq!(
        std::fs::read(
            &common::table_files(
                &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
                "profile"
            )[0]
        )
        .unwrap(),
        profile,
        "the previous run's outputs are untouched"
    );
}

#[test]
fn error_severity_check_fails_the_run_with_its_table_and_publishes_nothing() {
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "        max: 10000\n        severity: quarantine",
        "        max: 10000\n        severity: error",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("validation failed")
            && run
                .stderr
                .contains("check `quantity_plausible` (range): 24 failing rows"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.contains("valid_transactions.quantity_plausible") && run.stdout.contains("fail"),
        "the checks table is printed: {}",
        run.stdout
    );
    assert!(!project.path("out/customer_segments").exists());
}

#[test]
fn warn_severity_check_reports_and_the_run_goes_on() {
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "        max: 10000\n        severity: quarantine",
        "        max: 10000\n        severity: warn",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(0);
    assert!(
        run.stdout
            .lines()
            .any(|line| line.contains("quantity_plausible") && line.contains("warn")),
        "{}",
        run.stdout
    );
    assert!(
        project
            .path("out/customer_segments/run_id=2011-12-10/_SUCCESS")
            .exists()
    );
    let rejects = common::table(
        &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
        "rejects/valid_transactions",
    );
    assert_eq!(
        rejects.iter().map(|b| b.num_rows()).sum::<usize>(),
        0,
        "a warning quarantines nothing (the pattern check, still quarantining, finds no row)"
    );
}

#[test]
fn strict_source_names_file_line_and_column_of_a_bad_row() {
    let project = Project::copy_of_repository();
    project.replace_in(PIPELINE, "    on_error: quarantine\n", "");
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("source `raw_transactions`")
            && run.stderr.contains("retail/transactions.csv line ")
            && run.stderr.contains("invoice_date: ")
            && run.stderr.contains("on_error: quarantine"),
        "{}",
        run.stderr
    );
    assert!(
        !project
            .path("out/customer_segments/run_id=2011-12-10/_SUCCESS")
            .exists()
    );
}

#[test]
fn a_report_path_that_cannot_be_written_stops_the_run_before_it_publishes() {
    let project = Project::copy_of_repository();
    let missing = project.path("no/such/folder/report.json");
    let run = project.segflow(&["run", PIPELINE, "--report-json", missing.to_str().unwrap()]);
    run.assert_exit(1);
    assert!(
        run.stderr.contains("cannot write the run report to")
            && run.stderr.contains("no/such/folder/report.json"),
        "{}",
        run.stderr
    );
    let output = project.path("out/customer_segments");
    assert!(
        !output.join("run_id=2011-12-10/_SUCCESS").exists()
            && !output.join("_LATEST.json").exists(),
        "nothing is published when the report cannot be written"
    );

    // A folder in the report's place is refused as well; a writable path gets the whole
    // report, and no temporary file is left beside it.
    let folder = project.path("reports");
    std::fs::create_dir_all(&folder).unwrap();
    let run = project.segflow(&["run", PIPELINE, "--report-json", folder.to_str().unwrap()]);
    run.assert_exit(1);
    assert!(run.stderr.contains("it is a folder"), "{}", run.stderr);
    let report = folder.join("run.json");
    project
        .segflow(&["run", PIPELINE, "--report-json", report.to_str().unwrap()])
        .assert_exit(0);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["run_id"], "2011-12-10");
    let left: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("run.json")]);
}

#[test]
fn features_that_cannot_be_clustered_are_a_validation_failure_naming_why() {
    // Two feature vectors among all customers, for five segments.
    let project = Project::copy_of_repository();
    project.without_value_stage();
    project.replace_in(
        "sql/retail/customer_features.sql",
        "    s.frequency,\n",
        "    s.frequency % 2 AS frequency,\n",
    );
    project.replace_in(
        "sql/retail/customer_features.sql",
        "CAST(DATE '${as_of}' - s.last_purchase AS BIGINT) AS days_since_last_purchase",
        "CAST(7 AS BIGINT) AS days_since_last_purchase",
    );
    project.replace_in(
        "sql/retail/customer_features.sql",
        "CAST(s.total_spend AS DOUBLE) AS total_spend",
        "CAST(100 AS DOUBLE) AS total_spend",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("only 2 distinct feature vectors")
            && run.stderr.contains("cannot form 5 segments"),
        "{}",
        run.stderr
    );
    assert!(
        !project
            .path("out/customer_segments/run_id=2011-12-10/_SUCCESS")
            .exists()
    );

    // A value whose square overflows a float (not clipped: recency has no winsorize).
    let project = Project::copy_of_repository();
    project.without_value_stage();
    project.replace_in("sql/retail/customer_features.sql",
        "CAST(DATE '${as_of}' - s.last_purchase AS BIGINT) AS days_since_last_purchase",
        "CASE WHEN s.frequency = (SELECT max(frequency) FROM summary) THEN 1e308 \
         ELSE CAST(CAST(DATE '${as_of}' - s.last_purchase AS BIGINT) AS DOUBLE) END AS days_since_last_purchase",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr
            .contains("feature `days_since_last_purchase` has values too large to cluster"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_check_failing_for_want_of_rows_says_where_the_rows_went() {
    // A declared column too many: every line of the source is set aside, and the row
    // count check fails on an empty table.
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "      - { name: country, type: string }\n",
        "      - { name: country, type: string }\n      - { name: channel, type: string }\n",
    );
    let run = project.segflow(&["run", PIPELINE]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("check `row_count` (row_count): 0 rows"),
        "{}",
        run.stderr
    );
    let lines = std::fs::read_to_string(project.path("fixtures/retail/transactions.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert!(
        run.stderr.contains(&format!(
            "source `raw_transactions` set aside {lines} of {lines} rows: {lines} × expected 9 fields, found 8"
        )),
        "{}",
        run.stderr
    );
}

/// The files under `dir`, relative to it, sorted (none when it does not exist).
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(next) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                dirs.push(entry.path());
            } else {
                files.push(
                    entry
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    files.sort();
    files
}

#[cfg(unix)]
#[test]
fn a_run_stopped_by_sigterm_or_ctrl_c_cleans_up_and_leaves_the_published_run_alone() {
    let project = common::bench_project();
    // Lines enough for the run to take a few seconds, so a signal lands mid-run.
    project
        .segflow(&[
            "generate",
            "bench/data/many.parquet",
            "--format",
            "parquet",
            "--rows",
            "3000000",
        ])
        .assert_exit(0);
    let args = [
        "run",
        common::BENCH_PIPELINE,
        "--var",
        "transactions=many.parquet",
        "--spill-dir",
        "spill",
        "--memory-limit",
        "100MB",
        "--run-id",
        "day",
    ];
    project.segflow(&args).assert_exit(0);
    let output = project.path("out/customer_segments");
    let published = files_under(&output);
    for (signal, code) in [("-TERM", 143), ("-INT", 130)] {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_segflow"))
            .args(args)
            .current_dir(project.path(""))
            .env_remove("SEGFLOW_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The run's spill folder is made first thing: once it is there, the run is under
        // way; a moment later its steps are.
        let started = std::time::Instant::now();
        while std::fs::read_dir(project.path("spill"))
            .map(|entries| entries.count() == 0)
            .unwrap_or(true)
        {
            assert!(started.elapsed().as_secs() < 60, "the run never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(700));
        let killed = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let stopped = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&stopped.stderr);
        assert_eq!(stopped.status.code(), Some(code), "{signal}: {stderr}");
        assert!(
            stderr.contains("stopping: removing this run's staging and spill folders"),
            "{stderr}"
        );
        assert_eq!(
            files_under(&project.path("spill")),
            Vec::<String>::new(),
            "the spill folder is removed"
        );
        assert!(
            !output.join("_staging").exists(),
            "the staging folder is removed: {:?}",
            files_under(&output.join("_staging"))
        );
        assert_eq!(
            files_under(&output),
            published,
            "{signal}: the published run is as it was"
        );
    }
}

#[cfg(not(feature = "ballista"))]
#[test]
fn a_build_without_ballista_says_how_to_get_it() {
    let project = Project::copy_of_repository();
    let run = project.segflow(&["run", PIPELINE, "--engine", "ballista-standalone"]);
    run.assert_exit(1);
    assert!(
        run.stderr
            .contains("this segflow was built without Ballista: build it with `cargo build --features ballista`"),
        "{}",
        run.stderr
    );
    assert!(!project.path("out/customer_segments/_LATEST.json").exists());
}

#[test]
fn a_failing_segment_check_publishes_nothing_and_a_warning_one_is_reported() {
    let project = Project::copy_of_repository();
    // The example's largest segment holds 31.7% of 1,310 customers, its smallest 14.6%.
    project.replace_in(
        PIPELINE,
        "  k: 5\n",
        "  k: 5\n  checks:\n    - { type: max_share, value: 0.25, severity: warn }\n",
    );
    let warned = project.segflow(&["run", PIPELINE]);
    warned.assert_exit(0);
    assert!(
        warned.stdout.contains(
            "check max_share (warn): warn  largest segment `Loyal` holds 31.7% (415 of 1310 customers); at most 25.0% required"
        ),
        "{}",
        warned.stdout
    );
    std::fs::remove_dir_all(project.path("out")).unwrap();

    project.replace_in(
        PIPELINE,
        "    - { type: max_share, value: 0.25, severity: warn }\n",
        "    - { type: max_share, value: 0.25, severity: warn }\n    - { type: min_share, value: \"15%\" }\n",
    );
    let failed = project.segflow(&["run", PIPELINE]);
    failed.assert_exit(4);
    assert!(
        failed.stderr.contains(
            "segment check `min_share` (min_share): smallest segment `Champions` holds 14.6% (191 of 1310 customers); at least 15.0% required"
        ),
        "{}",
        failed.stderr
    );
    let output = project.path("out/customer_segments");
    assert!(
        !output.join("run_id=2011-12-10").exists() && !output.join("_LATEST.json").exists(),
        "nothing is published"
    );
}

/// A build without the `delta` feature refuses `format: delta` before anything runs.
#[cfg(not(feature = "delta"))]
#[test]
fn delta_output_without_delta_support_is_a_pipeline_mistake() {
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "    store: output\n    path: customer_segments\n",
        "    store: output\n    path: customer_segments\n    format: delta\n",
    );
    for command in ["check", "run"] {
        let run = project.segflow(&[command, PIPELINE]);
        run.assert_exit(3);
        assert!(
            run.stderr.contains(
                "segment.output.format: `delta` needs segflow built with Delta Lake support"
            ),
            "{}",
            run.stderr
        );
    }
    assert!(!project.path("out/customer_segments").exists());
}
