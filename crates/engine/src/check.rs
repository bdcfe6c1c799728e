//! Plans every step's SQL against schemas alone, so mistakes a parser cannot see (an
//! unknown column, a type mismatch, a wrong function) are found before any data is read.
//!
//! Sources with a declared schema are stood in for by empty tables; others get the schema
//! the run would infer (Parquet footers, the first rows of CSV/JSON). Each planned step is
//! registered as an empty table with its result schema, so later steps plan against it.
//! A step whose input failed is skipped rather than reported again.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use segflow_pipeline::{CheckKind, Pipeline, Validate, did_you_mean};
use segflow_plan::StepGraph;

use crate::segment::check_segment_schema;
use crate::sources::{arrow_schema, register_source};
use crate::validate::annotated_sql;
use crate::{EngineError, Result, describe, stores};

/// Plans a validate step's checks against its input; its result has the input's schema.
/// On failure, the key of the check to blame (None: the step) and the error.
async fn check_validate(
    ctx: &SessionContext,
    validate: &Validate,
) -> Result<SchemaRef, (Option<String>, DataFusionError)> {
    let input = ctx
        .table(validate.input.as_str())
        .await
        .map_err(|error| (None, error))?;
    let schema = Arc::new(input.schema().as_arrow().clone());
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    // Plan each row-level check alone, so an error points at the check that caused it.
    for check in &validate.checks {
        let known: Vec<&str> = columns.iter().map(String::as_str).collect();
        if let Some(missing) = check
            .kind
            .input_columns()
            .into_iter()
            .find(|column| !known.contains(column))
        {
            let error = DataFusionError::Plan(format!(
                "check `{}` reads column `{missing}`, which `{}` does not have{}; its columns: {}",
                check.name,
                validate.input,
                did_you_mean(missing, &known),
                known.join(", ")
            ));
            return Err((Some(check.key.clone()), error));
        }
        let single = Validate {
            checks: vec![check.clone()],
            ..validate.clone()
        };
        let sql = match &check.kind {
            CheckKind::Sql { sql } => sql.clone(),
            kind if kind.is_row_level() => annotated_sql(&single, &columns),
            _ => continue,
        };
        ctx.sql_with_options(&sql, crate::steps::query_only())
            .await
            .map_err(|error| (Some(check.key.clone()), error))?;
    }
    Ok(schema)
}

/// Every problem found, each located in the pipeline file; empty when the pipeline plans.
pub async fn check_schemas(pipeline: &Pipeline, graph: &StepGraph) -> Result<()> {
    let ctx = SessionContext::new();
    stores::register_stores(&ctx, pipeline)?;
    let mut problems = Vec::new();
    let mut failed: HashSet<String> = HashSet::new();
    for (index, source) in pipeline.sources.iter().enumerate() {
        let registered = match &source.schema {
            Some(columns) => ctx
                .register_table(
                    source.name.as_str(),
                    Arc::new(EmptyTable::new(Arc::new(arrow_schema(columns)))),
                )
                .map(|_| ())
                .map_err(|error| describe(&error)),
            None => register_source(&ctx, source)
                .await
                .map_err(|error| error.to_string()),
        };
        if let Err(message) = registered {
            problems.push(format!(
                "{}: source `{}`: cannot read its schema: {message}",
                pipeline.at(&format!("sources[{index}]")),
                source.name
            ));
            failed.insert(source.name.clone());
        }
    }
    for planned in &graph.steps {
        let step = &planned.step;
        if planned.reads.iter().any(|table| failed.contains(table)) {
            failed.insert(step.name.clone());
            continue;
        }
        if let Some(validate) = &step.validate {
            match check_validate(&ctx, validate).await {
                Ok(schema) => {
                    ctx.register_table(step.name.as_str(), Arc::new(EmptyTable::new(schema)))
                        .map_err(|error| EngineError::Segment(error.to_string()))?;
                }
                Err((key, error)) => {
                    let key = key.unwrap_or_else(|| step.key.clone());
                    problems.push(format!(
                        "{}: step `{}`: {}",
                        pipeline.at(&key),
                        step.name,
                        describe(&error)
                    ));
                    failed.insert(step.name.clone());
                }
            }
            continue;
        }
        let frame = match ctx
            .sql_with_options(&step.sql, crate::steps::query_only())
            .await
        {
            Ok(frame) => frame,
            Err(error) => {
                let file = step
                    .sql_file
                    .as_ref()
                    .map(|file| format!(" ({})", file.display()))
                    .unwrap_or_default();
                problems.push(format!(
                    "{}: step `{}`{file}: {}",
                    pipeline.at(&step.sql_key()),
                    step.name,
                    describe(&error)
                ));
                failed.insert(step.name.clone());
                continue;
            }
        };
        let schema = Arc::new(frame.schema().as_arrow().clone());
        ctx.register_table(step.name.as_str(), Arc::new(EmptyTable::new(schema)))
            .map_err(|error| EngineError::Segment(error.to_string()))?;
    }
    let segment = &pipeline.segment;
    if !failed.contains(&segment.input) {
        let table = ctx
            .table(segment.input.as_str())
            .await
            .map_err(|error| EngineError::Segment(error.to_string()))?;
        if let Err((key, message)) = check_segment_schema(table.schema().as_arrow(), segment) {
            problems.push(format!("{}: {message}", pipeline.at(&key)));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Check {
            file: pipeline.file.clone(),
            problems,
        })
    }
}
