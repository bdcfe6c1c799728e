//! Runs under a memory limit: results that do not fit go to disk and the outputs are the
//! same; a limit too small to work in fails with a message that names the step and the
//! setting to change.

mod common;

use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::{Int32Type, Int64Type};
use common::Project;

/// customer id -> segment id of a published run.
fn segments_of(project: &Project, output: &str) -> BTreeMap<i64, i32> {
    let folder = common::published(&project.path(output));
    let mut segments = BTreeMap::new();
    for batch in common::table(&folder, "segments") {
        let ids = batch
            .column_by_name("customer_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let segment = batch
            .column_by_name("segment_id")
            .unwrap()
            .as_primitive::<Int32Type>();
        for row in 0..batch.num_rows() {
            segments.insert(ids.value(row), segment.value(row));
        }
    }
    segments
}

fn rejects_rows(project: &Project, output: &str, table: &str) -> usize {
    let folder = common::published(&project.path(output));
    common::table(&folder, &format!("rejects/{table}"))
        .iter()
        .map(|batch| batch.num_rows())
        .sum()
}

fn step_report(project: &Project, file: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(project.path(file)).unwrap()).unwrap()
}

#[test]
fn results_that_do_not_fit_spill_and_the_outputs_are_the_same() {
    let project = Project::copy_of_repository();
    project
        .segflow(&[
            "run",
            "pipelines/customer_segments.yaml",
            "--var",
            "output=file://../roomy",
            "--report-json",
            "roomy.json",
        ])
        .assert_exit(0);
    let run = project.segflow(&[
        "run",
        "pipelines/customer_segments.yaml",
        "--var",
        "output=file://../tight",
        "--memory-limit",
        "6MB",
        "--spill-dir",
        "spill",
        "--report-json",
        "report.json",
    ]);
    run.assert_exit(0);
    assert!(run.stdout.contains("(spilled to disk)"), "{}", run.stdout);
    let report = step_report(&project, "report.json");
    let spilled: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["spilled"] == true)
        .map(|step| step["name"].as_str().unwrap())
        .collect();
    assert!(
        !spilled.is_empty(),
        "6 MB is too little to hold every result"
    );

    // A spilled result is read back from files; its rows are still counted once.
    let counts = |report: &serde_json::Value| -> Vec<(String, u64, u64)> {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| {
                let count = |key: &str| step[key].as_u64().unwrap();
                (
                    step["name"].to_string(),
                    count("rows_in"),
                    count("rows_out"),
                )
            })
            .collect()
    };
    assert_eq!(
        counts(&report),
        counts(&step_report(&project, "roomy.json"))
    );

    let roomy = segments_of(&project, "roomy/customer_segments");
    assert!(roomy.len() > 1000);
    assert_eq!(segments_of(&project, "tight/customer_segments"), roomy);
    assert_eq!(
        rejects_rows(&project, "tight/customer_segments", "valid_transactions"),
        rejects_rows(&project, "roomy/customer_segments", "valid_transactions"),
    );
    let left: Vec<_> = std::fs::read_dir(project.path("spill")).unwrap().collect();
    assert!(left.is_empty(), "the run removes its spill files: {left:?}");
}

#[test]
fn a_limit_too_small_to_work_in_names_the_step_and_the_setting() {
    let project = Project::copy_of_repository();
    let run = project.segflow(&[
        "run",
        "pipelines/customer_segments.yaml",
        "--memory-limit",
        "256kB",
    ]);
    run.assert_exit(1);
    assert!(
        run.stderr.contains(
            "error: step `clean_transactions` ran out of memory: the run may use 256.0 kB (from --memory-limit)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("resources.memory_limit"),
        "{}",
        run.stderr
    );
    assert!(
        !project.path("out/customer_segments").exists(),
        "nothing is published"
    );
}

#[test]
fn the_pipeline_can_set_its_resources() {
    let project = Project::copy_of_repository();
    let pipeline = std::fs::read_to_string(project.path("pipelines/customer_segments.yaml"))
        .unwrap()
        + "resources:\n  memory_limit: 256kB\n  spill_dir: ../spill\n";
    project.write("pipelines/small.yaml", &pipeline);
    let run = project.segflow(&["run", "pipelines/small.yaml"]);
    run.assert_exit(1);
    assert!(
        run.stderr
            .contains("256.0 kB (from resources.memory_limit)"),
        "{}",
        run.stderr
    );
    assert!(project.path("spill").is_dir());

    let broken = pipeline.replace("memory_limit: 256kB", "memory_limit: lots");
    project.write("pipelines/broken.yaml", &broken);
    let run = project.segflow(&["run", "pipelines/broken.yaml"]);
    run.assert_exit(3);
    assert!(
        run.stderr
            .contains("resources.memory_limit: `lots` is not a size"),
        "{}",
        run.stderr
    );
}

#[test]
fn profile_adds_each_steps_executed_plan_with_its_metrics() {
    let project = Project::copy_of_repository();
    let run = project.segflow(&[
        "run",
        "pipelines/customer_segments.yaml",
        "--profile",
        "--report-json",
        "report.json",
    ]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("profile of step daily_purchases"),
        "{}",
        run.stdout
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("report.json")).unwrap())
            .unwrap();
    let steps = report["steps"].as_array().unwrap();
    let profile_of = |name: &str| {
        let step = steps.iter().find(|step| step["name"] == name).unwrap();
        step["profile"].as_str().unwrap_or_default().to_string()
    };
    for step in steps {
        let profile = step["profile"].as_str().unwrap_or_default();
        // A step streamed into its reader ran inside the reader's plan.
        let (with_metrics, why) = match step["streamed_into"].as_str() {
            Some(reader) => (profile_of(reader), format!("streamed into {reader}")),
            None => (profile.to_string(), String::new()),
        };
        assert!(profile.contains(&why), "{profile}");
        assert!(
            with_metrics.contains("output_rows="),
            "step {} has operator metrics: {with_metrics}",
            step["name"]
        );
    }
    // clean_transactions' de-duplication shows in the plan it streamed into (the checks
    // themselves aggregate nothing).
    assert!(profile_of("valid_transactions").contains("AggregateExec"));
    // Nothing reads the invoices counted per day, so they are not counted.
    let daily = profile_of("daily_purchases");
    assert!(
        daily.contains("AggregateExec") && !daily.contains("invoice_no"),
        "{daily}"
    );
    let plain = project.segflow(&[
        "run",
        "pipelines/customer_segments.yaml",
        "--report-json",
        "plain.json",
    ]);
    plain.assert_exit(0);
    assert!(
        !std::fs::read_to_string(project.path("plain.json"))
            .unwrap()
            .contains("\"profile\"")
    );
}
