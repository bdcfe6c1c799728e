//! Plans every step's SQL against schemas alone, so mistakes a parser cannot see (an
//! unknown column, a type mismatch, a wrong function) are found before any data is read.
//!
//! Sources with a declared schema are stood in for by empty tables; others get the schema
//! the run would infer (Parquet footers, the first rows of CSV/JSON). Each planned step is
//! registered as an empty table with its result schema, so later steps plan against it.
//! A step whose input failed is skipped rather than reported again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::empty::EmptyTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use segflow_pipeline::{CheckKind, Pipeline, Validate, did_you_mean};
use segflow_plan::{PlannedStep, StepGraph};

use crate::in_memory::used_columns_of;
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

/// Every problem found, each located in the pipeline file; when the pipeline plans, the
/// columns of each step's result that later steps read.
pub async fn check_schemas(pipeline: &Pipeline, graph: &StepGraph) -> Result<ReadColumns> {
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
        read_columns(&ctx, pipeline, graph).await
    } else {
        Err(EngineError::Check {
            file: pipeline.file.clone(),
            problems,
        })
    }
}

/// For each step whose result later steps read only in part, the columns they read, in the
/// result's order. A run holds only those: a column nothing reads is neither written nor
/// (as DataFusion prunes what a plan's output does not need) computed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReadColumns(HashMap<String, Vec<String>>);

impl ReadColumns {
    /// The columns of `step` to hold; `None`: all of them.
    pub fn of(&self, step: &str) -> Option<&[String]> {
        self.0.get(step).map(Vec::as_slice)
    }
}

/// Works out [`ReadColumns`] from the readers' optimised plans, with every step registered
/// (as an empty table) in `ctx`. The steps are taken last to first, so each reader's plan is
/// planned holding only what its own readers read: a column feeding only an unread one is
/// unread too. A result is held whole when the segment stage reads it, when a validate step
/// reads it (its output is its input's columns, and its checks, `sql` ones included, may
/// read any of them), when nothing reads it, or when a reader's plan does not show which
/// columns it reads.
async fn read_columns(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    graph: &StepGraph,
) -> Result<ReadColumns> {
    let planning = |error: DataFusionError| EngineError::Segment(describe(&error));
    let mut read = ReadColumns::default();
    // Per SQL step, the columns of each table its plan reads.
    let mut reads_of_sql_steps: HashMap<&str, HashMap<String, Vec<String>>> = HashMap::new();
    for planned in graph.steps.iter().rev() {
        let name = planned.step.name.as_str();
        if let Some(columns) = held_columns(ctx, pipeline, graph, planned, &reads_of_sql_steps)
            .await
            .map_err(planning)?
        {
            read.0.insert(name.to_string(), columns);
        }
        if planned.step.validate.is_none() {
            let mut frame = ctx
                .sql_with_options(&planned.step.sql, crate::steps::query_only())
                .await
                .map_err(planning)?;
            if let Some(columns) = read.of(name) {
                frame = crate::steps::only_columns(ctx, frame, columns).map_err(planning)?;
            }
            reads_of_sql_steps.insert(name, used_columns_of(frame).map_err(planning)?);
        }
    }
    Ok(read)
}

/// The columns of `planned`'s result its readers read, when they read only some; `reads` has
/// the columns the plan of each SQL step reads.
async fn held_columns(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    graph: &StepGraph,
    planned: &PlannedStep,
    reads: &HashMap<&str, HashMap<String, Vec<String>>>,
) -> datafusion::error::Result<Option<Vec<String>>> {
    let name = planned.step.name.as_str();
    if name == pipeline.segment.input {
        return Ok(None);
    }
    let mut columns: HashSet<&str> = HashSet::new();
    let mut readers = graph
        .steps
        .iter()
        .filter(|later| later.reads.iter().any(|table| table == name))
        .peekable();
    if readers.peek().is_none() {
        return Ok(None);
    }
    for reader in readers {
        let read = reads.get(reader.step.name.as_str());
        let Some(used) = read.and_then(|tables| tables.get(name)) else {
            return Ok(None);
        };
        columns.extend(used.iter().map(String::as_str));
    }
    let frame = ctx.table(name).await?;
    let all = frame.schema().fields();
    let held: Vec<String> = all
        .iter()
        .map(|field| field.name().clone())
        .filter(|column| columns.contains(column.as_str()))
        .collect();
    // A reader counting rows alone reads no column; holding none is not worth the case.
    Ok((!held.is_empty() && held.len() < all.len()).then_some(held))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn names(columns: &[&str]) -> Option<Vec<String>> {
        Some(columns.iter().map(|column| column.to_string()).collect())
    }

    #[tokio::test]
    async fn results_hold_only_the_columns_later_steps_read() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/customer_segments.yaml");
        let pipeline = segflow_pipeline::load(&example, &BTreeMap::new()).unwrap();
        let graph = segflow_plan::plan(&pipeline).unwrap();
        let read = check_schemas(&pipeline, &graph).await.unwrap();
        let of = |step: &str| read.of(step).map(<[String]>::to_vec);
        // Nothing reads the invoices counted per day or refunded per customer.
        assert_eq!(
            of("daily_purchases"),
            names(&["customer_id", "purchase_day", "spend"])
        );
        assert_eq!(
            of("customer_refunds"),
            names(&["customer_id", "refund_value"])
        );
        // So nothing reads the invoice numbers of valid transactions either; nor their
        // stock codes, countries, quantities or prices.
        assert_eq!(
            of("valid_transactions"),
            names(&["customer_id", "invoiced_at", "amount", "is_refund"])
        );
        // A validate step reads every column of its input; the segment stage, of its.
        assert_eq!(of("clean_transactions"), None);
        assert_eq!(of("customer_features"), None);
    }
}
