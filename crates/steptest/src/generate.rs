//! `segflow test --generate STEP`: a starter test from a sample of the step's real input
//! and what the step makes of it today, for a person to review and trim.
//!
//! The YAML is written by hand rather than through the YAML library: rows are written one
//! per line in flow style (`- {a: 1, b: "x"}`), which reads like a table and diffs well,
//! and text values are JSON-quoted (valid YAML) so nothing is reinterpreted on reading.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use segflow_pipeline::Severity;

use crate::{TestError, tests_dir};

/// Writes `tests/<pipeline>/<step>.yaml` and returns its path; an existing file is kept.
pub async fn generate(pipeline_path: &Path, step: &str, rows: usize) -> Result<PathBuf, TestError> {
    let pipeline = segflow_pipeline::load(pipeline_path, &Default::default())?;
    let graph = segflow_plan::plan(&pipeline).map_err(segflow_engine::EngineError::from)?;
    let Some(planned) = graph.steps.iter().find(|p| p.step.name == step) else {
        let names: Vec<&str> = graph.steps.iter().map(|p| p.step.name.as_str()).collect();
        return Err(TestError::Generate(format!(
            "--generate {step}: no step is named `{step}`{}",
            segflow_pipeline::did_you_mean(step, &names)
        )));
    };
    let path = tests_dir(pipeline_path).join(format!("{step}.yaml"));
    if path.exists() {
        return Err(TestError::Generate(format!(
            "{} already exists; move it away to generate it again",
            path.display()
        )));
    }
    let given = segflow_engine::sample_inputs(&pipeline, step, rows).await?;
    let run = segflow_engine::run_in_memory(&graph, &[step.to_string()], given.clone(), None, None)
        .await?;

    let mut yaml = String::new();
    let _ = writeln!(
        yaml,
        "# Starter test for `{step}`, written by `segflow test --generate {step}` from the first\n\
         # {rows} rows of each table it reads (only the columns it uses) and what the step made of\n\
         # them. Review it: the expected rows are what the SQL does today, not necessarily what\n\
         # it should do. Trim the rows to the cases that matter and name the test after them."
    );
    yaml.push_str("tests:\n");
    let _ = writeln!(yaml, "  - name: {step}_on_a_sample");
    let _ = writeln!(yaml, "    step: {step}");
    let vars: Vec<String> = pipeline
        .vars
        .iter()
        .filter(|(name, _)| !pipeline.secret_vars.contains(*name))
        .map(|(name, value)| format!("{name}: {}", quoted(value)))
        .collect();
    if !vars.is_empty() {
        let _ = writeln!(yaml, "    vars: {{ {} }}", vars.join(", "));
    }
    yaml.push_str("    given:\n");
    for (table, batch) in &given {
        let _ = writeln!(yaml, "      {table}:");
        write_rows(&mut yaml, "        ", batch, &[]);
    }
    let output = run.tables.get(step).cloned().unwrap_or_default();
    yaml.push_str("    expect:\n      rows:\n");
    for batch in &output {
        write_rows(&mut yaml, "        ", batch, &[]);
    }
    if output.iter().all(|batch| batch.num_rows() == 0) {
        yaml.truncate(yaml.len() - "      rows:\n".len());
        yaml.push_str("      rows: []\n");
    }
    let quarantines = planned.step.validate.as_ref().is_some_and(|validate| {
        validate
            .checks
            .iter()
            .any(|check| check.severity == Severity::Quarantine)
    });
    if quarantines {
        let _ = writeln!(yaml, "    expect_rejects:\n      {step}:");
        let rejects = run.rejects.get(step).cloned().unwrap_or_default();
        if rejects.iter().all(|batch| batch.num_rows() == 0) {
            yaml.truncate(yaml.len() - 1);
            yaml.push_str(" []\n");
        }
        for batch in &rejects {
            // `step` is the same on every row and `reasons` repeats the values.
            write_rows(&mut yaml, "        ", batch, &["step", "reasons"]);
        }
    }
    std::fs::create_dir_all(path.parent().expect("a folder"))
        .and_then(|()| std::fs::write(&path, yaml))
        .map_err(|error| TestError::Generate(format!("writing {}: {error}", path.display())))?;
    Ok(path)
}

fn write_rows(yaml: &mut String, indent: &str, batch: &RecordBatch, skip: &[&str]) {
    if batch.num_rows() == 0 {
        return;
    }
    let options = FormatOptions::default();
    let schema = batch.schema();
    let columns: Vec<(String, &dyn Array, ArrayFormatter)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(field, _)| !skip.contains(&field.name().as_str()))
        .map(|(field, array)| {
            let formatter = ArrayFormatter::try_new(array.as_ref(), &options).expect("displayable");
            (field.name().clone(), array.as_ref(), formatter)
        })
        .collect();
    for row in 0..batch.num_rows() {
        let fields: Vec<String> = columns
            .iter()
            .map(|(name, array, formatter)| {
                let value = if array.is_null(row) {
                    "null".to_string()
                } else {
                    let text = formatter.value(row).to_string();
                    match array.data_type() {
                        DataType::Int8
                        | DataType::Int16
                        | DataType::Int32
                        | DataType::Int64
                        | DataType::UInt8
                        | DataType::UInt16
                        | DataType::UInt32
                        | DataType::UInt64
                        | DataType::Float32
                        | DataType::Float64
                        | DataType::Decimal128(..)
                        | DataType::Boolean => text,
                        _ => quoted(&text),
                    }
                };
                format!("{name}: {value}")
            })
            .collect();
        let _ = writeln!(yaml, "{indent}- {{ {} }}", fields.join(", "));
    }
}

/// JSON's quoting is valid YAML and keeps `2011-12-10` or `true` text.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}
