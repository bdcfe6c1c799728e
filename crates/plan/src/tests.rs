use std::collections::BTreeMap;

use super::*;

/// A pipeline with one source `raw` and the given (name, sql) steps, segmenting `segment_input`.
pub(crate) fn pipeline(steps: &[(&str, &str)], segment_input: &str) -> Pipeline {
    let mut text = String::from(
        "name: t\nstores:\n  s: { url: \"file://.\" }\nsources:\n  - { name: raw, store: s, path: x.csv, format: csv }\nsteps:\n",
    );
    for (name, sql) in steps {
        text.push_str(&format!(
            "  - name: {name}\n    kind: clean\n    sql: \"{sql}\"\n"
        ));
    }
    text.push_str(&format!(
        "segment: {{ input: {segment_input}, key: id, features: [x], k: 2, output: {{ store: s, path: out }} }}\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, text).unwrap();
    segflow_pipeline::load(&file, &BTreeMap::new()).unwrap()
}

/// The problems' messages without their locations.
fn messages(error: PlanError) -> Vec<String> {
    error
        .problems
        .into_iter()
        .map(|located| located.problem.to_string())
        .collect()
}

fn names(graph: &StepGraph) -> Vec<(&str, usize)> {
    graph
        .steps
        .iter()
        .map(|planned| (planned.step.name.as_str(), planned.level))
        .collect()
}

#[test]
fn orders_steps_by_what_they_read_whatever_the_declared_order() {
    let p = pipeline(
        &[
            ("features", "SELECT * FROM daily JOIN refunds USING (id)"),
            ("daily", "SELECT * FROM cleaned"),
            ("cleaned", "SELECT * FROM raw"),
            ("refunds", "SELECT * FROM cleaned WHERE q < 0"),
        ],
        "features",
    );
    let graph = plan(&p).unwrap();
    assert_eq!(
        names(&graph),
        [
            ("cleaned", 1),
            ("daily", 2),
            ("refunds", 2),
            ("features", 3)
        ]
    );
    assert_eq!(graph.steps[3].reads, ["daily", "refunds"]);
}

#[test]
fn cte_names_are_not_tables() {
    let p = pipeline(
        &[("a", "WITH raw2 AS (SELECT * FROM raw) SELECT * FROM raw2")],
        "a",
    );
    assert_eq!(plan(&p).unwrap().steps[0].reads, ["raw"]);
}

#[test]
fn unknown_table_is_named_with_a_hint() {
    let p = pipeline(&[("a", "SELECT * FROM rwa")], "a");
    let error = plan(&p).unwrap_err();
    assert!(
        error.problems[0].at.ends_with("p.yaml:9:5: steps[0].sql"),
        "{error}"
    );
    assert_eq!(
        messages(error),
        ["step `a`: reads table `rwa`, which no source or step defines (did you mean `raw`?)"]
    );
}

#[test]
fn a_cycle_names_every_step_on_it() {
    let p = pipeline(
        &[
            ("a", "SELECT * FROM c"),
            ("b", "SELECT * FROM a"),
            ("c", "SELECT * FROM b"),
            ("d", "SELECT * FROM raw"),
        ],
        "d",
    );
    let error = plan(&p).unwrap_err();
    assert_eq!(
        messages(error),
        ["steps depend on each other in a cycle: a -> b -> c -> a"]
    );
}

#[test]
fn a_step_reading_itself_is_a_cycle() {
    let p = pipeline(&[("a", "SELECT * FROM a")], "a");
    assert_eq!(
        messages(plan(&p).unwrap_err()),
        ["steps depend on each other in a cycle: a -> a"]
    );
}

#[test]
fn syntax_error_names_step_and_position() {
    let p = pipeline(&[("a", "SELECT * FRM raw")], "a");
    let message = messages(plan(&p).unwrap_err()).remove(0);
    assert!(
        message.starts_with("step `a`: SQL does not parse:"),
        "{message}"
    );
    assert!(message.contains("Line: 1"), "{message}");
}

#[test]
fn only_one_query_per_step() {
    let p = pipeline(&[("a", "DROP TABLE raw")], "a");
    let message = plan(&p).unwrap_err().to_string();
    assert!(message.contains("must be exactly one query"), "{message}");
    let p = pipeline(&[("a", "SELECT 1; SELECT 2")], "a");
    assert!(plan(&p).unwrap_err().to_string().contains("2 statements"));
}

#[test]
fn unknown_segment_input() {
    let p = pipeline(&[("a", "SELECT * FROM raw")], "b");
    let error = plan(&p).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(": segment.input: table `b` is not a source or step")
    );
}
