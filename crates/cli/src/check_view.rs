//! `segflow check --format json`: whether the pipeline is sound and, when it is not, every
//! problem as an object (file, line, column, key, message), for editors and CI annotations.

use std::path::Path;

use segflow_engine::EngineError;
use segflow_pipeline::{Pipeline, PipelineError, Problem};
use segflow_plan::StepGraph;
use serde_json::{Value, json};

/// The outcome of checking the pipeline file `file`; the caller masks its strings.
pub fn json(file: &Path, checked: &anyhow::Result<(Pipeline, StepGraph)>) -> Value {
    match checked {
        Ok((pipeline, graph)) => json!({
            "pipeline": pipeline.name,
            "file": file.display().to_string(),
            "ok": true,
            "sources": pipeline.sources.len(),
            "steps": graph.steps.len(),
            "problems": [],
        }),
        Err(error) => json!({
            "file": file.display().to_string(),
            "ok": false,
            "problems": problems(file, error),
        }),
    }
}

fn problems(file: &Path, error: &anyhow::Error) -> Vec<Value> {
    let in_file = |file: &Path, problems: &[Problem]| -> Vec<Value> {
        problems
            .iter()
            .map(|problem| located(file, &problem.key, problem.position, &problem.message))
            .collect()
    };
    if let Some(error) = error.downcast_ref::<PipelineError>() {
        return match error {
            PipelineError::Syntax {
                file,
                line,
                column,
                key,
                message,
            } => vec![located(file, key, Some((*line, *column)), message)],
            PipelineError::Invalid { file, problems } => in_file(file, problems),
            PipelineError::Read { .. } => vec![unlocated(file, error)],
        };
    }
    match error.downcast_ref::<EngineError>() {
        Some(EngineError::Check { file, problems }) => in_file(file, problems),
        Some(EngineError::Plan(plan)) => plan
            .problems
            .iter()
            .map(|problem| {
                located(
                    file,
                    &problem.key,
                    problem.position,
                    &problem.problem.to_string(),
                )
            })
            .collect(),
        _ => vec![unlocated(file, error)],
    }
}

fn located(file: &Path, key: &str, position: Option<(usize, usize)>, message: &str) -> Value {
    json!({
        "file": file.display().to_string(),
        "line": position.map(|(line, _)| line),
        "column": position.map(|(_, column)| column),
        "key": key,
        "message": message,
    })
}

/// A problem no key of the file carries (a store that cannot be reached, say).
fn unlocated(file: &Path, error: &dyn std::fmt::Display) -> Value {
    json!({
        "file": file.display().to_string(),
        "line": null,
        "column": null,
        "key": null,
        "message": format!("{error:#}"),
    })
}
