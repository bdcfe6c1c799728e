//! `plan`, partial runs (`--select`, `--until`), variables, concurrency and secrets, run
//! through the real binary on a copy of the example project.

mod common;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use common::Project;

const PIPELINE: &str = "pipelines/customer_segments.yaml";

#[test]
fn compile_prints_each_step_as_it_runs_with_variables_and_checks_compiled() {
    let project = Project::copy_of_repository();
    let all = project.segflow(&["compile", PIPELINE]);
    all.assert_exit(0);
    insta::assert_snapshot!("compile_all", all.stdout);

    let one = project.segflow(&[
        "compile",
        PIPELINE,
        "customer_features",
        "--var",
        "as_of=2011-09-01",
    ]);
    one.assert_exit(0);
    assert!(
        one.stdout
            .starts_with("-- step customer_features (merge, sql/retail/customer_features.sql)")
            && one.stdout.contains("DATE '2011-09-01'")
            && !one.stdout.contains("-- step clean_transactions"),
        "{}",
        one.stdout
    );

    let unknown = project.segflow(&["compile", PIPELINE, "customer_feature"]);
    unknown.assert_exit(3);
    assert!(
        unknown.stderr.contains("did you mean `customer_features`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn plan_shows_levels_reads_and_writes_in_three_formats() {
    let project = Project::copy_of_repository();
    let text = project.segflow(&["plan", PIPELINE]);
    text.assert_exit(0);
    let root = project.path("");
    let shown = text
        .stdout
        .replace(root.to_string_lossy().trim_end_matches('/'), "[PROJECT]");
    insta::assert_snapshot!("plan_text", shown);

    let json = project.segflow(&["plan", PIPELINE, "--format", "json"]);
    json.assert_exit(0);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 5);
    assert_eq!(steps[4]["name"], "customer_features");
    assert_eq!(
        steps[4]["reads"],
        serde_json::json!(["customer_refunds", "daily_purchases"])
    );
    assert_eq!(steps[4]["level"], 4);
    assert_eq!(
        steps[2]["level"], steps[3]["level"],
        "independent steps share a level"
    );

    let dot = project.segflow(&["plan", PIPELINE, "--format", "dot"]);
    dot.assert_exit(0);
    assert!(dot.stdout.starts_with("digraph \"customer_segments\" {"));
    assert!(
        dot.stdout
            .contains("\"valid_transactions\" -> \"daily_purchases\";")
    );
    assert!(dot.stdout.contains("\"customer_features\" -> \"segment\";"));
}

#[test]
fn select_runs_a_step_and_what_it_needs_and_publishes_nothing() {
    let project = Project::copy_of_repository();
    let run = project.segflow(&[
        "run",
        PIPELINE,
        "--select",
        "customer_refunds",
        "--report-json",
        "r.json",
    ]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("only the selected steps ran"),
        "{}",
        run.stdout
    );
    assert_eq!(
        project.report_steps("r.json"),
        [
            "clean_transactions",
            "valid_transactions",
            "customer_refunds"
        ]
    );
    assert!(!project.path("out").exists(), "nothing is published");

    let until = project.segflow(&[
        "run",
        PIPELINE,
        "--until",
        "daily_purchases",
        "--report-json",
        "u.json",
    ]);
    until.assert_exit(0);
    assert_eq!(
        project.report_steps("u.json"),
        [
            "clean_transactions",
            "valid_transactions",
            "daily_purchases"
        ]
    );

    let unknown = project.segflow(&["run", PIPELINE, "--select", "customer_refund"]);
    unknown.assert_exit(3);
    assert_eq!(
        unknown.stderr.trim(),
        "error: --select customer_refund: no source or step is named `customer_refund` (did you mean `customer_refunds`?)"
    );
}

#[test]
fn var_overrides_the_as_of_date() {
    let project = Project::copy_of_repository();
    project
        .segflow(&["run", PIPELINE, "--var", "as_of=2011-09-01"])
        .assert_exit(0);
    // The run id follows the as-of day.
    let segments = common::table(
        &common::published_run(&project.path("out/customer_segments"), "2011-09-01"),
        "segments",
    );
    let t_of = |customer: i64| -> Option<i64> {
        segments.iter().find_map(|batch: &RecordBatch| {
            let keys = batch
                .column_by_name("customer_id")
                .unwrap()
                .as_primitive::<Int64Type>();
            let t = batch
                .column_by_name("T")
                .unwrap()
                .as_primitive::<Int64Type>();
            (0..batch.num_rows())
                .find(|&i| keys.value(i) == customer)
                .map(|i| t.value(i))
        })
    };
    // 2011-03-15 to 2011-09-01 is 170 days; 90003's first purchase is on the as-of date.
    assert_eq!(t_of(90001), Some(170));
    assert_eq!(t_of(90003), None);
}

#[test]
fn a_var_that_is_no_date_is_named_by_check_and_run_as_a_pipeline_error() {
    let project = Project::copy_of_repository();
    for command in ["check", "run"] {
        let run = project.segflow(&[command, PIPELINE, "--var", "as_of=2011-13-45"]);
        run.assert_exit(3);
        assert!(
            run.stderr.contains(
                "step `customer_features` (sql/retail/customer_features.sql): variable `as_of` is `2011-13-45`, which does not fit"
            ) && run.stderr.contains("--var as_of="),
            "{command}: {}",
            run.stderr
        );
    }
    assert!(!project.path("out/customer_segments/_LATEST.json").exists());
}

#[test]
fn segments_do_not_depend_on_how_many_steps_run_at_once() {
    let project = Project::copy_of_repository();
    project
        .segflow(&["run", PIPELINE, "--max-concurrent-steps", "1"])
        .assert_exit(0);
    let serial = std::fs::read(
        &common::table_files(
            &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
            "profile",
        )[0],
    )
    .unwrap();
    let serial_segments = common::table(
        &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
        "segments",
    );
    project
        .segflow(&["run", PIPELINE, "--max-concurrent-steps", "8"])
        .assert_exit(0);
    let parallel_segments = common::table(
        &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
        "segments",
    );
    assert_eq!(serial_segments, parallel_segments);
    assert_eq!(
        serial,
        std::fs::read(
            &common::table_files(
                &common::published_run(&project.path("out/customer_segments"), "2011-12-10"),
                "profile"
            )[0]
        )
        .unwrap()
    );
}

#[test]
fn a_secret_from_the_environment_never_reaches_the_output() {
    const SECRET: &str = "tok-9f8e7d6c5b";
    let env = [("SEGFLOW_TEST_TOKEN", SECRET)];
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "vars:\n",
        "vars:\n  token: \"${env:SEGFLOW_TEST_TOKEN}\"\n",
    );
    project.replace_in(
        PIPELINE,
        "WHERE is_refund AND",
        "WHERE is_refund AND '${token}' IS NOT NULL AND",
    );

    let mut seen = Vec::new();
    for args in [
        vec![
            "-vv",
            "--log-format",
            "json",
            "run",
            PIPELINE,
            "--report-json",
            "r.json",
        ],
        vec!["-vv", "run", PIPELINE],
        vec!["plan", PIPELINE, "--format", "json"],
        vec!["plan", PIPELINE],
        vec!["check", PIPELINE],
    ] {
        let run = project.segflow_with_env(&args, &env);
        run.assert_exit(0);
        seen.push(run.stdout + &run.stderr);
    }
    let report = std::fs::read_to_string(project.path("r.json")).unwrap();
    assert!(report.contains("\"token\": \"***\""), "{report}");
    seen.push(report);
    // Nor the run's own account and page, published with it.
    let version = common::published(&project.path("out/customer_segments"));
    for file in ["run.json", "report.html"] {
        let text = std::fs::read_to_string(version.join(file)).unwrap();
        assert!(text.contains("***"), "{file} shows the variable masked");
        seen.push(text);
    }

    // A SQL error that quotes the secret shows it masked.
    project.replace_in(
        PIPELINE,
        "'${token}' IS NOT NULL",
        "\"${token}\" IS NOT NULL",
    );
    let failed = project.segflow_with_env(&["run", PIPELINE], &env);
    failed.assert_exit(3);
    assert!(
        failed.stderr.contains("No field named \"***\""),
        "{}",
        failed.stderr
    );
    seen.push(failed.stderr);

    for output in seen {
        assert!(!output.contains(SECRET), "the secret leaked:\n{output}");
    }
}

#[test]
fn a_short_secret_is_masked_where_it_was_substituted_and_json_stays_json() {
    // `3` is in every report's numbers: searching the output for it would garble them.
    let env = [("SEGFLOW_TEST_SHARD", "3")];
    let project = Project::copy_of_repository();
    project.replace_in(
        PIPELINE,
        "    url: ${output}\n",
        "    url: \"${output}-${env:SEGFLOW_TEST_SHARD}\"\n",
    );
    let run = project.segflow_with_env(
        &[
            "-vv",
            "--log-format",
            "json",
            "run",
            PIPELINE,
            "--report-json",
            "r.json",
        ],
        &env,
    );
    run.assert_exit(0);
    // Where the secret was rendered, it is masked: the output folder's URL.
    assert!(
        run.stdout.contains("/out-***/customer_segments/"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("out-3"), "{}", run.stdout);
    // Nowhere else: the numbers are whole.
    let inertia = run
        .stdout
        .lines()
        .find(|line| line.starts_with("segments  k="))
        .unwrap();
    assert!(!inertia.contains("***"), "{inertia}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("r.json")).unwrap())
            .expect("the report is JSON");
    assert!(report["sources"][0]["rows_read"].as_u64().unwrap() > 0);
    let outputs = report["outputs"].as_array().unwrap();
    assert!(
        outputs
            .iter()
            .all(|output| output["url"].as_str().unwrap().contains("/out-***/")),
        "{outputs:?}"
    );
    for line in run.stderr.lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "a log line that is not JSON: {line}");
    }
    assert!(
        project
            .path("out-3/customer_segments/_LATEST.json")
            .exists()
    );
}

#[cfg(target_os = "linux")]
#[test]
fn gc_removes_spill_folders_of_processes_that_are_gone() {
    let project = Project::copy_of_repository();
    // No process has this id (Linux ids stay below 2^22); this test's own process is alive.
    project.write("tmp/segflow-4294967290-dead/spill-0.arrow", "x");
    let live = format!("tmp/segflow-{}-live/spill-0.arrow", std::process::id());
    project.write(&live, "x");
    let tmpdir = project.path("tmp").display().to_string();
    let env = [("TMPDIR", tmpdir.as_str())];
    let dry = project.segflow_with_env(&["gc", PIPELINE, "--older-than", "0s", "--dry-run"], &env);
    dry.assert_exit(0);
    assert!(
        dry.stdout.contains("would delete ")
            && dry.stdout.contains(
                "segflow-4294967290-dead  (spill folder of a segflow process that is gone)"
            ),
        "{}",
        dry.stdout
    );
    assert!(project.path("tmp/segflow-4294967290-dead").exists());
    project
        .segflow_with_env(&["gc", PIPELINE, "--older-than", "0s"], &env)
        .assert_exit(0);
    assert!(!project.path("tmp/segflow-4294967290-dead").exists());
    assert!(
        project.path(&live).exists(),
        "a live process's folder stays"
    );
}

#[test]
fn runs_lists_runs_and_gc_removes_only_dead_ones() {
    let project = Project::copy_of_repository();
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    project
        .segflow(&["run", PIPELINE, "--run-id", "second"])
        .assert_exit(0);
    // What a run killed while staging, and one killed while publishing, leave behind.
    project.write(
        "out/customer_segments/_staging/killed/attempt=20261202T000000000Z-0badf00d/profile.parquet",
        "x",
    );
    project.write(
        "out/customer_segments/run_id=half/attempt=20261202T000000000Z-0badf00d/segments/part-00000.parquet",
        "x",
    );

    let runs = project.segflow(&["runs", PIPELINE]);
    runs.assert_exit(0);
    let rows: Vec<(String, String, bool)> = runs
        .stdout
        .lines()
        .skip(2)
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words.len() >= 2 && !line.contains("folder")).then(|| {
                (
                    words[0].to_string(),
                    words[1].to_string(),
                    line.contains("(latest)"),
                )
            })
        })
        .collect();
    let expected = [
        ("second", "published", true),
        ("2011-12-10", "published", false),
        ("half", "incomplete", false),
        ("killed", "staging", false),
    ];
    assert_eq!(
        rows,
        expected.map(|(id, status, latest)| (id.to_string(), status.to_string(), latest)),
        "{}",
        runs.stdout
    );
    assert!(runs.stdout.contains("`segflow gc`"), "{}", runs.stdout);

    // For scripts: the same folders as JSON.
    let json = project.segflow(&["runs", PIPELINE, "--format", "json"]);
    json.assert_exit(0);
    let listed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let statuses: Vec<(&str, &str, bool)> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["run_id"].as_str().unwrap(),
                run["status"].as_str().unwrap(),
                run["latest"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, expected);
    assert_eq!(listed["runs"][0]["version"], 1);

    // The same listing by folder path instead of pipeline.
    let by_path = project.segflow(&["runs", "out/customer_segments"]);
    by_path.assert_exit(0);
    assert_eq!(by_path.stdout.lines().count(), runs.stdout.lines().count());

    // Fresh leftovers may belong to a live run: the default age keeps them.
    let young = project.segflow(&["gc", PIPELINE]);
    young.assert_exit(0);
    assert!(
        young.stdout.contains("nothing to clean"),
        "{}",
        young.stdout
    );
    let dry = project.segflow(&["gc", PIPELINE, "--older-than", "0s", "--dry-run"]);
    dry.assert_exit(0);
    assert_eq!(
        dry.stdout.matches("would delete").count(),
        2,
        "{}",
        dry.stdout
    );
    assert!(
        project
            .path("out/customer_segments/_staging/killed")
            .exists()
    );

    let gc = project.segflow(&["gc", PIPELINE, "--older-than", "0s"]);
    gc.assert_exit(0);
    assert!(gc.stdout.contains("2 files deleted"), "{}", gc.stdout);
    let after = project.segflow(&["runs", PIPELINE]);
    assert!(!after.stdout.contains("half") && !after.stdout.contains("killed"));
    assert!(
        project
            .path("out/customer_segments/run_id=second/_SUCCESS")
            .exists()
    );
    assert!(
        project
            .path("out/customer_segments/run_id=2011-12-10/_SUCCESS")
            .exists()
    );

    let bad = project.segflow(&["run", PIPELINE, "--run-id", "../escape"]);
    bad.assert_exit(2);
    assert!(bad.stderr.contains("contains `/`"), "{}", bad.stderr);
}

#[test]
fn plan_shows_which_steps_keep_customers_apart_and_why_the_others_do_not() {
    let project = Project::copy_of_repository();
    // Two steps an analyst might add: a total over all customers, and a top ten.
    let pipeline = std::fs::read_to_string(project.path(PIPELINE)).unwrap();
    let added = pipeline.replacen(
        "\nvalue:\n",
        "
  - name: revenue_per_country
    kind: merge
    sql: |
      SELECT country, sum(amount) AS revenue
      FROM valid_transactions
      GROUP BY country

  - name: top_customers
    kind: merge
    sql_file: ../sql/top_customers.sql

  - name: top_customer_features
    kind: merge
    sql: |
      SELECT f.* FROM customer_features f JOIN top_customers t ON t.customer_id = f.customer_id

value:
",
        1,
    );
    assert_ne!(
        added, pipeline,
        "the example has a value stage to insert steps before"
    );
    project.write(PIPELINE, &added);
    project.write(
        "sql/top_customers.sql",
        "-- The ten customers who spent most.\nSELECT customer_id, total_spend\nFROM customer_features\nORDER BY total_spend DESC\nLIMIT 10\n",
    );
    let text = project.segflow(&["plan", PIPELINE]);
    text.assert_exit(0);
    let line = |step: &str| {
        text.stdout
            .lines()
            .skip_while(|line| !line.starts_with("bucketing by partition_key"))
            .find(|line| line.trim_start().starts_with(&format!("{step} ")))
            .unwrap_or_else(|| panic!("no bucketing line for {step}:\n{}", text.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("raw_transactions"),
        "raw_transactions split by customer_id (text read as BIGINT, as clean_transactions casts it); rows without a key dealt out over the buckets, as no step groups them"
    );
    assert_eq!(
        line("daily_purchases"),
        "daily_purchases bucketed key in customer_id"
    );
    assert!(
        line("valid_transactions").ends_with(
            "checked over all buckets: row_count, change_row_count, freshness_invoiced_at, schema"
        ),
        "{}",
        line("valid_transactions")
    );
    assert_eq!(
        line("revenue_per_country"),
        "revenue_per_country whole Aggregate at line 3 of steps[5].sql: GROUP BY valid_transactions.country does not include the key, so one group can have rows in every bucket"
    );
    assert_eq!(
        line("top_customers"),
        "top_customers whole Sort at line 5 of sql/top_customers.sql: ORDER BY with LIMIT keeps the first rows of the whole table, not of one bucket"
    );
    assert_eq!(
        line("top_customer_features"),
        "top_customer_features whole reads top_customers, which needs every bucket first"
    );

    let json = project.segflow(&["plan", PIPELINE, "--format", "json"]);
    json.assert_exit(0);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let steps = plan["bucketing"]["steps"].as_array().unwrap();
    let step = |name: &str| steps.iter().find(|s| s["name"] == name).unwrap();
    assert_eq!(step("customer_features")["bucketed"], true);
    assert_eq!(
        step("customer_features")["key_columns"],
        serde_json::json!(["customer_id"])
    );
    assert_eq!(step("top_customers")["operator"], "Sort");
    assert_eq!(plan["bucketing"]["sources"][0]["key"], "customer_id");
}

#[test]
fn plan_of_a_pipeline_that_does_not_check_still_shows_its_graph() {
    let project = Project::copy_of_repository();
    project.replace_in(
        "sql/retail/daily_purchases.sql",
        "sum(amount) AS spend",
        "sum(amout) AS spend",
    );
    let text = project.segflow(&["plan", PIPELINE]);
    text.assert_exit(0);
    assert!(
        text.stdout.contains("level 3  daily_purchases"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("bucketing by partition_key: not analysed, the pipeline does not check"),
        "{}",
        text.stdout
    );
}
