//! What a newcomer and an analyst do first, through the real binary: look at rows
//! (`show`), pick parts of the graph with selectors, start a project (`init`), let the
//! editor check the pipeline (`schema`), and hand results to tools (`check` / `test`
//! as JSON, JUnit XML, shell completions).

mod common;

use std::path::Path;

use common::Project;

const PIPELINE: &str = "pipelines/customer_segments.yaml";

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

#[test]
fn show_prints_the_rows_of_a_step_after_running_what_it_reads() {
    let project = Project::copy_of_repository();
    let one = project.segflow(&[
        "show",
        PIPELINE,
        "customer_features",
        "--where",
        "customer_id IN (12698, 12699)",
    ]);
    one.assert_exit(0);
    // Rows come in no set order; the two customers are sorted for the snapshot.
    let mut lines: Vec<&str> = one.stdout.lines().collect();
    lines[4..6].sort();
    insta::assert_snapshot!("show_step", lines.join("\n"));
    assert!(!project.path("out").exists(), "show publishes nothing");

    let limited = project.segflow(&["show", PIPELINE, "customer_features", "-n", "3"]);
    limited.assert_exit(0);
    assert!(
        limited
            .stdout
            .starts_with("customer_features (merge): 1,310 rows, first 3 shown"),
        "{}",
        limited.stdout
    );
    // A header, a rule, three rows and the rules around them.
    assert_eq!(limited.stdout.lines().count(), 1 + 7);
}

#[test]
fn show_reads_sources_and_several_tables_as_json_and_csv() {
    let project = Project::copy_of_repository();
    let refunds = project.segflow(&[
        "show",
        PIPELINE,
        "raw_transactions",
        "--where",
        "quantity < 0 AND customer_id = '12699'",
        "--limit",
        "2",
        "--format",
        "csv",
    ]);
    refunds.assert_exit(0);
    let lines: Vec<&str> = refunds.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "invoice_no,stock_code,description,quantity,invoice_date,unit_price,customer_id,country"
    );
    assert_eq!(lines.len(), 3, "{}", refunds.stdout);
    assert!(lines[1..].iter().all(|line| line.starts_with('C')));

    let upstream = project.segflow(&[
        "show",
        PIPELINE,
        "+customer_refunds",
        "--limit",
        "1",
        "--format",
        "json",
    ]);
    upstream.assert_exit(0);
    let shown = json(&upstream.stdout);
    let names: Vec<&str> = shown["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|table| table["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "raw_transactions",
            "clean_transactions",
            "valid_transactions",
            "customer_refunds"
        ]
    );
    let refunds = &shown["tables"][3];
    assert_eq!(refunds["kind"], "clean");
    assert_eq!(refunds["columns"][1]["name"], "refund_value");
    assert!(refunds["total_rows"].as_u64().unwrap() > 100);
    assert!(refunds["rows"][0]["refund_value"].as_f64().unwrap() > 0.0);

    let many_as_csv = project.segflow(&["show", PIPELINE, "+customer_refunds", "--format", "csv"]);
    many_as_csv.assert_exit(2);
    assert!(
        many_as_csv.stderr.contains("--format csv prints one table"),
        "{}",
        many_as_csv.stderr
    );
}

#[test]
fn show_reports_a_failing_check_and_shows_the_rows_anyway() {
    let project = Project::copy_of_repository();
    project.replace_in(PIPELINE, "min: 1000\n", "min: 1000000\n");
    let run = project.segflow(&["show", PIPELINE, "valid_transactions", "-n", "1"]);
    run.assert_exit(0);
    assert!(
        run.stderr.contains("check `row_count` (row_count)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout.starts_with("valid_transactions (validate): 2"),
        "{}",
        run.stdout
    );

    let unknown = project.segflow(&["show", PIPELINE, "customer_refund+"]);
    unknown.assert_exit(3);
    assert_eq!(
        unknown.stderr.trim(),
        "error: --select customer_refund+: no source or step is named `customer_refund` (did you mean `customer_refunds`?)"
    );
    let bad_filter = project.segflow(&[
        "show",
        PIPELINE,
        "raw_transactions",
        "--where",
        "no_such_column > 1",
    ]);
    bad_filter.assert_exit(3);
    assert!(
        bad_filter.stderr.contains("segflow show --where"),
        "{}",
        bad_filter.stderr
    );
}

#[test]
fn selectors_pick_downstream_upstream_and_exclude_in_run_and_plan() {
    let project = Project::copy_of_repository();
    let plan = project.segflow(&[
        "plan",
        PIPELINE,
        "--select",
        "daily_purchases+ customer_refunds",
    ]);
    plan.assert_exit(0);
    insta::assert_snapshot!(
        "plan_selected",
        plan.stdout
            .replace(&project.path("").display().to_string(), "<project>/")
    );

    let run = project.segflow(&[
        "run",
        PIPELINE,
        "--select",
        "valid_transactions+",
        "--exclude",
        "customer_features",
        "--report-json",
        "r.json",
    ]);
    run.assert_exit(0);
    assert_eq!(
        project.report_steps("r.json"),
        [
            "clean_transactions",
            "valid_transactions",
            "daily_purchases",
            "customer_refunds"
        ]
    );
    assert!(
        !project.path("out").exists(),
        "a selection publishes nothing"
    );

    let needed = project.segflow(&[
        "run",
        PIPELINE,
        "--select",
        "customer_features",
        "--exclude",
        "daily_purchases",
    ]);
    needed.assert_exit(3);
    assert!(
        needed.stderr.contains(
            "--exclude daily_purchases: step `customer_features` is selected and reads `daily_purchases`"
        ),
        "{}",
        needed.stderr
    );
}

#[test]
fn check_as_json_lists_every_problem_with_its_place() {
    let project = Project::copy_of_repository();
    let ok = project.segflow(&["check", PIPELINE, "--format", "json"]);
    ok.assert_exit(0);
    let ok = json(&ok.stdout);
    assert_eq!(
        (ok["ok"].as_bool(), ok["steps"].as_u64()),
        (Some(true), Some(5))
    );

    common::copy_dir(
        &common::repository().join("tests/broken/many_problems_at_once"),
        &project.path("broken"),
    );
    let broken = project.segflow(&["check", "broken/pipeline.yaml", "--format", "json"]);
    broken.assert_exit(3);
    insta::assert_snapshot!("check_json_broken", broken.stdout);
    let problems = json(&broken.stdout)["problems"].as_array().unwrap().clone();
    assert!(problems.len() > 1);
    assert!(
        problems
            .iter()
            .all(|p| p["line"].as_u64().is_some() && p["key"].is_string())
    );
}

#[test]
fn test_results_as_json_and_junit_for_ci() {
    let project = Project::copy_of_repository();
    project.replace_in(
        "pipelines/tests/customer_segments/steps.yaml",
        "spend: 25.00, invoices: 2",
        "spend: 26.00, invoices: 2",
    );
    let run = project.segflow(&[
        "test",
        PIPELINE,
        "--select",
        "+daily_purchases",
        "--format",
        "json",
        "--junit",
        "results.xml",
    ]);
    run.assert_exit(4);
    let outcomes = json(&run.stdout);
    assert_eq!(
        (outcomes["tests"].as_u64(), outcomes["failed"].as_u64()),
        (Some(4), Some(1))
    );
    let failed: Vec<&serde_json::Value> = outcomes["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|outcome| outcome["passed"] == false)
        .collect();
    assert_eq!(failed[0]["target"], "step daily_purchases");
    assert!(failed[0]["failures"][0].as_str().unwrap().contains("26"));

    // As a CI system reads it: well-formed XML, a testcase per test, the failure inside.
    let xml = std::fs::read_to_string(project.path("results.xml")).unwrap();
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut cases, mut failures, mut suites) = (0, 0, 0);
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(tag) | quick_xml::events::Event::Empty(tag) => {
                match tag.name().as_ref() {
                    b"testcase" => cases += 1,
                    b"failure" => failures += 1,
                    b"testsuite" => suites += 1,
                    _ => {}
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!((suites, cases, failures), (1, 4, 1), "{xml}");
    assert!(xml.contains("failures=\"1\""));
}

#[test]
fn init_writes_a_project_that_passes_check_run_and_test() {
    let home = tempfile::tempdir().unwrap();
    let project = home.path().join("my_segments");
    let segflow = |args: &[&str], dir: &Path| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_segflow"))
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "segflow {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    segflow(&["init", "my_segments"], home.path());
    segflow(&["check", "pipelines/segments.yaml"], &project);
    let run = segflow(&["run", "pipelines/segments.yaml"], &project);
    assert!(run.contains("segments  k=4"), "{run}");
    let segments = common::table(
        &common::published_run(&project.join("out/segments"), "2011-12-10"),
        "segments",
    );
    assert!(segments.iter().map(|batch| batch.num_rows()).sum::<usize>() > 100);
    let tests = segflow(&["test", "pipelines/segments.yaml"], &project);
    assert!(tests.ends_with("2 passed, 0 failed\n"), "{tests}");

    let again = std::process::Command::new(env!("CARGO_BIN_EXE_segflow"))
        .args(["init", "my_segments"])
        .current_dir(home.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not empty"));
}

/// A YAML document as the JSON an editor's schema validator sees (keys as text).
fn yaml_as_json(yaml: serde_yaml::Value) -> serde_json::Value {
    use serde_yaml::Value as Yaml;
    match yaml {
        Yaml::Null => serde_json::Value::Null,
        Yaml::Bool(value) => value.into(),
        Yaml::Number(number) => serde_json::to_value(number).unwrap(),
        Yaml::String(text) => text.into(),
        Yaml::Sequence(items) => items.into_iter().map(yaml_as_json).collect(),
        Yaml::Mapping(map) => map
            .into_iter()
            .map(|(key, value)| {
                let key = match key {
                    Yaml::String(text) => text,
                    other => serde_yaml::to_string(&other).unwrap().trim().to_string(),
                };
                (key, yaml_as_json(value))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Yaml::Tagged(tagged) => yaml_as_json(tagged.value),
    }
}

/// Validates each (place, document) against `schema` with Python's `jsonschema`, the
/// reference implementation of JSON Schema, and returns each document's errors as
/// `<JSON pointer>: <message>`. `None` with a note when it is not installed (`pip install
/// jsonschema`); with `SEGFLOW_REQUIRE_JSONSCHEMA` set, as in `.ci/run`, that fails.
///
/// Not the `jsonschema` crate: its dependencies ask for other features of serde_json,
/// ahash and regex than segflow's build uses, and `cargo test` would then build Arrow and
/// DataFusion a second time (ten minutes on two cores).
fn validate_with_jsonschema(
    schema: &serde_json::Value,
    documents: &[(String, serde_json::Value)],
) -> Option<Vec<Vec<String>>> {
    if !common::python_has("jsonschema", "SEGFLOW_REQUIRE_JSONSCHEMA") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    let documents: Vec<&serde_json::Value> =
        documents.iter().map(|(_, document)| document).collect();
    std::fs::write(
        &input,
        serde_json::to_string(&serde_json::json!({"schema": schema, "documents": documents}))
            .unwrap(),
    )
    .unwrap();
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
given = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(given["schema"])
validator = Draft202012Validator(given["schema"])
print(json.dumps([
    ["/" + "/".join(str(part) for part in error.absolute_path) + ": " + error.message
     for error in validator.iter_errors(document)]
    for document in given["documents"]
]))
"#;
    let found = common::python_json(dir.path(), script, &[input.to_str().unwrap()]);
    Some(serde_json::from_value(found).unwrap())
}

#[test]
fn the_schema_accepts_every_pipeline_in_the_repository_and_rejects_broken_ones() {
    let project = Project::copy_of_repository();
    let schema = project.segflow(&["schema"]);
    schema.assert_exit(0);
    let schema = json(&schema.stdout);
    let document = |yaml: &str| yaml_as_json(serde_yaml::from_str(yaml).unwrap());

    let mut valid: Vec<(String, serde_json::Value)> = Vec::new();
    for entry in std::fs::read_dir(common::repository().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            valid.push((
                path.display().to_string(),
                document(&std::fs::read_to_string(&path).unwrap()),
            ));
        }
    }
    let template = common::repository().join("crates/cli/templates/init/segments.yaml");
    valid.push((
        template.display().to_string(),
        document(&std::fs::read_to_string(&template).unwrap()),
    ));
    for (doc, line, yaml) in common::doc_pipelines() {
        valid.push((format!("{}:{line}", doc.display()), document(&yaml)));
    }
    assert!(valid.len() >= 4, "{valid:?}");

    // Mistakes the schema sees as an editor would, at the key.
    let broken = [
        ("unknown_top_level_key", "/"),
        ("unknown_key_in_step", "/steps/1"),
        ("k_range_misspelt", "/segment/k"),
        ("missing_required_key", "/segment"),
        ("unknown_format", "/sources/0/format"),
        ("on_error_unknown_value", "/sources/0/on_error"),
        ("check_unknown_type", "/steps/1/checks/0/type"),
        ("wrong_type", "/segment/k"),
    ];
    let mut documents = valid.clone();
    for (name, _) in broken {
        let path = common::repository().join(format!("tests/broken/{name}/pipeline.yaml"));
        documents.push((
            name.to_string(),
            document(&std::fs::read_to_string(path).unwrap()),
        ));
    }
    let Some(errors) = validate_with_jsonschema(&schema, &documents) else {
        return;
    };
    for ((place, _), errors) in documents.iter().zip(&errors).take(valid.len()) {
        assert!(errors.is_empty(), "{place} breaks the schema: {errors:?}");
    }
    for ((name, at), errors) in broken.iter().zip(&errors[valid.len()..]) {
        assert!(
            errors
                .iter()
                .any(|error| error.starts_with(&format!("{at}: "))),
            "{name}: expected an error at {at:?}, got {errors:?}"
        );
    }
}

#[test]
fn completions_for_each_shell_know_the_subcommands() {
    let project = Project::copy_of_repository();
    for shell in ["bash", "zsh", "fish"] {
        let script = project.segflow(&["completions", shell]);
        script.assert_exit(0);
        // fish names long options without their dashes (`-l exclude`).
        for command in ["show", "compile", "init", "schema", "exclude"] {
            assert!(script.stdout.contains(command), "{shell} lacks {command}");
        }
    }
}
