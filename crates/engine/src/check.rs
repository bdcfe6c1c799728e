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
use segflow_publish::RunColumns;

use crate::bucketing::Bucketing;
use crate::columns::{ReadColumns, read_columns};
use crate::contract;
use crate::error::describe;
use crate::segment::{check_segment_schema, planned_segments_schema};
use crate::sources::{arrow_schema, register_source};
use crate::sql::query_only;
use crate::steps::validate::flagging_sql;
use crate::value::{check_value_schema, segment_with_value, with_value_columns};
use crate::{EngineError, ErrorClass, Result, session, stores};

/// The step graph alone: structure, references and cycles, no schemas.
pub fn plan(pipeline: &Pipeline) -> Result<StepGraph> {
    Ok(segflow_plan::plan(pipeline)?)
}

/// Checks the pipeline without reading data: the step graph first, then every step's SQL
/// planned against the sources' schemas, then the segment settings against its input.
pub async fn check(pipeline: &Pipeline) -> Result<StepGraph> {
    Ok(checked(pipeline).await?.0)
}

/// As [`check`], with the columns of each step's result that later steps read.
pub(crate) async fn checked(pipeline: &Pipeline) -> Result<(StepGraph, ReadColumns)> {
    let graph = segflow_plan::plan(pipeline)?;
    let read_columns = check_schemas(pipeline, &graph)
        .await
        .map_err(|error| error.blaming_variables(pipeline))?;
    Ok((graph, read_columns))
}

/// Plans a validate step's checks against its input; its result has the input's schema.
/// On failure, the key of the check to blame (None: the step) and the error.
async fn check_validate(
    ctx: &SessionContext,
    validate: &Validate,
) -> Result<(SchemaRef, String), (Option<String>, DataFusionError)> {
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
        if let CheckKind::Change {
            metric,
            column: Some(column),
            ..
        } = &check.kind
        {
            let data_type = schema
                .field_with_name(column)
                .map(|field| field.data_type().clone())
                .expect("its columns were found above");
            if metric.needs_number() && !data_type.is_numeric() {
                let error = DataFusionError::Plan(format!(
                    "check `{}` takes the {} of column `{column}`, which is {data_type}; sum, mean, min and max need a numeric column (null_share and distinct take any)",
                    check.name,
                    metric.as_str()
                ));
                return Err((Some(format!("{}.column", check.key)), error));
            }
        }
        let single = Validate {
            checks: vec![check.clone()],
            ..validate.clone()
        };
        let sql = match &check.kind {
            CheckKind::Sql { sql } => sql.clone(),
            kind if kind.is_row_level() => flagging_sql(&single, &columns),
            _ => continue,
        };
        ctx.sql_with_options(&sql, query_only())
            .await
            .map_err(|error| (Some(check.key.clone()), error))?;
    }
    Ok((schema, validate_sql(validate, &columns)))
}

/// A validate step as it runs: one query flags every row for the row-level checks; each
/// `sql` check is its own query; the other table-level checks are counted on the flagged
/// rows.
fn validate_sql(validate: &Validate, columns: &[String]) -> String {
    let mut text = String::new();
    let row_level: Vec<&str> = validate
        .checks
        .iter()
        .filter(|check| check.kind.is_row_level())
        .map(|check| check.name.as_str())
        .collect();
    if !row_level.is_empty() {
        text.push_str(&format!(
            "-- flags every row of `{}` for {}\n{};\n",
            validate.input,
            row_level.join(", "),
            flagging_sql(validate, columns)
        ));
    }
    for check in &validate.checks {
        match &check.kind {
            CheckKind::Sql { sql } => {
                text.push_str(&format!(
                    "-- check {} (its own query)\n{};\n",
                    check.name,
                    sql.trim_end().trim_end_matches(';')
                ));
            }
            CheckKind::Change { metric, column, .. } => {
                text.push_str(&format!(
                    "-- check {} (change): {} of the flagged rows, compared with the previous run's\n",
                    check.name,
                    metric.id(column.as_deref())
                ));
            }
            kind if !kind.is_row_level() => {
                text.push_str(&format!(
                    "-- check {} ({}): counted on the flagged rows\n",
                    check.name,
                    kind.type_name()
                ));
            }
            _ => {}
        }
    }
    text
}

/// Where a step's planned result breaks its contract, located at the contract's keys; and,
/// for a published step, a partition column it lacks or a column of the run's names.
fn contract_problems(
    pipeline: &Pipeline,
    step: &segflow_pipeline::Step,
    schema: &arrow::datatypes::Schema,
) -> Vec<segflow_pipeline::Problem> {
    let mut problems: Vec<segflow_pipeline::Problem> = match &step.contract {
        Some(contract) => contract::schema_problems(contract, schema, &step.name)
            .into_iter()
            .map(|(key, message)| pipeline.problem(&key, message))
            .collect(),
        None => Vec::new(),
    };
    if let Some(published) = &step.publish {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for (i, column) in published.partition_by.iter().enumerate() {
            if !names.contains(&column.as_str()) {
                problems.push(pipeline.problem(
                    &format!("{}.publish.partition_by[{i}]", step.key),
                    format!(
                        "`{}` has no column `{column}`{}; its columns: {}",
                        step.name,
                        did_you_mean(column, &names),
                        names.join(", ")
                    ),
                ));
            }
        }
        let as_of = pipeline.vars.get("as_of").map(String::as_str);
        let planned = Arc::new(schema.clone());
        if let Err(message) = RunColumns::new("check", as_of).published_schema(&planned) {
            problems.push(pipeline.problem(
                &format!("{}.publish", step.key),
                format!("`{}` {message}", published.table),
            ));
        }
    }
    problems
}

/// A step's SQL as it runs: variables substituted, a validate step's checks compiled.
/// Secrets are in it; mask it before showing it.
#[derive(Debug, Clone)]
pub struct CompiledStep {
    pub name: String,
    pub kind: String,
    /// The SQL file, or the step's key for inline SQL.
    pub origin: String,
    pub sql: String,
}

/// Every step of the pipeline as it will run, in run order; fails as `check` does.
pub async fn compile(pipeline: &Pipeline) -> Result<Vec<CompiledStep>> {
    let graph = segflow_plan::plan(pipeline)?;
    let (_, compiled, _) = check_and_compile(pipeline, &graph, Analyse::Not)
        .await
        .map_err(|error| error.blaming_variables(pipeline))?;
    Ok(compiled)
}

/// Every problem found, each located in the pipeline file; when the pipeline plans, the
/// columns of each step's result that later steps read.
pub async fn check_schemas(pipeline: &Pipeline, graph: &StepGraph) -> Result<ReadColumns> {
    Ok(check_and_compile(pipeline, graph, Analyse::Not).await?.0)
}

/// Which steps keep customers apart on the pipeline's `partition_key`, as `segflow plan`
/// shows it; `None` without one. Fails as `check` does.
pub async fn analyse_bucketing(pipeline: &Pipeline) -> Result<Option<Bucketing>> {
    let graph = segflow_plan::plan(pipeline)?;
    let (_, _, bucketing) = check_and_compile(pipeline, &graph, Analyse::Bucketing)
        .await
        .map_err(|error| error.blaming_variables(pipeline))?;
    Ok(bucketing)
}

/// The sources split by a `partition_key` (their own, or the pipeline's where they have
/// the column), each with its column; `None` when the pipeline names none. A key the
/// source lacks, or of a type buckets cannot be made from, is a problem of its key.
async fn partition_keys(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    failed: &HashSet<String>,
    problems: &mut Vec<segflow_pipeline::Problem>,
) -> Result<Option<Vec<(String, String)>>> {
    if !pipeline.declares_partition_key() {
        return Ok(None);
    }
    let mut split = Vec::new();
    let mut every_column: Vec<String> = Vec::new();
    for (index, source) in pipeline.sources.iter().enumerate() {
        if failed.contains(&source.name) {
            continue;
        }
        let (key, column) = match (&source.partition_key, &pipeline.partition_key) {
            (Some(column), _) => (format!("sources[{index}].partition_key"), column),
            (None, Some(column)) => ("partition_key".to_string(), column),
            (None, None) => continue,
        };
        let table = ctx
            .table(source.name.as_str())
            .await
            .map_err(|error| EngineError::table(&source.name, error))?;
        let schema = table.schema().as_arrow();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        every_column.extend(names.iter().map(|name| name.to_string()));
        match schema.field_with_name(column) {
            // The pipeline's key is for the sources that have the column.
            Err(_) if source.partition_key.is_none() => {}
            Err(_) => problems.push(pipeline.problem(
                &key,
                format!(
                    "column `{column}` is not in source `{}`{}; its columns: {}",
                    source.name,
                    did_you_mean(column, &names),
                    names.join(", ")
                ),
            )),
            Ok(field) if !crate::bucketing::can_key_buckets(field.data_type()) => problems.push(pipeline.problem(
                &key,
                format!(
                    "`{column}` of source `{}` is {}: a partition key is an integer or text column (equal floats, dates or times can be written differently)",
                    source.name,
                    field.data_type()
                ),
            )),
            Ok(_) => split.push((source.name.clone(), column.clone())),
        }
    }
    if let Some(column) = &pipeline.partition_key
        && !split.iter().any(|(_, key)| key == column)
        && !problems
            .iter()
            .any(|problem| problem.key == "partition_key")
    {
        let names: Vec<&str> = every_column.iter().map(String::as_str).collect();
        // Exports name columns their own way: `CustomerID` for `customer_id`.
        let loose = |name: &str| name.replace('_', "").to_ascii_lowercase();
        let hint = match names.iter().find(|name| loose(name) == loose(column)) {
            Some(name) => format!(
                " (`{name}` is spelt differently: name it on the source, `partition_key: {name}`)"
            ),
            None => did_you_mean(column, &names),
        };
        problems.push(pipeline.problem(
            "partition_key",
            format!("no source has a column `{column}`{hint}"),
        ));
    }
    Ok(Some(split))
}

/// Whether [`check_and_compile`] also works out which steps keep customers apart: only
/// `segflow plan` shows it, and it plans every step again.
#[derive(Clone, Copy, PartialEq)]
enum Analyse {
    Not,
    Bucketing,
}

/// [`check_schemas`], and each step's SQL as it was planned; with [`Analyse::Bucketing`]
/// and a `partition_key`, which steps keep customers apart.
async fn check_and_compile(
    pipeline: &Pipeline,
    graph: &StepGraph,
    analyse: Analyse,
) -> Result<(ReadColumns, Vec<CompiledStep>, Option<Bucketing>)> {
    let ctx = session::planning_session()?;
    let mut compiled = Vec::new();
    stores::register_stores(&ctx, pipeline)?;
    let mut problems = Vec::new();
    if pipeline.output_format == segflow_pipeline::OutputFormat::Delta
        && !segflow_publish::DELTA_SUPPORTED
    {
        let stage = if pipeline.segment.is_some() {
            "segment"
        } else {
            "value"
        };
        problems.push(pipeline.problem(
            &format!("{stage}.output.format"),
            "`delta` needs segflow built with Delta Lake support: `cargo build --features delta` (or `cargo install --path crates/cli --features delta`)",
        ));
    }
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
            None => match register_source(&ctx, source).await {
                Ok(_) => Ok(()),
                // The data's fault (files that disagree, a corrupt file), not the
                // pipeline's: the same exit code as when a run meets it.
                Err(error) if error.class() == ErrorClass::ValidationFailed => return Err(error),
                Err(error) => Err(error.to_string()),
            },
        };
        if let Err(message) = registered {
            problems.push(pipeline.problem(
                &format!("sources[{index}]"),
                format!(
                    "source `{}`: cannot read its schema: {message}",
                    source.name
                ),
            ));
            failed.insert(source.name.clone());
        }
    }
    let split_sources = partition_keys(&ctx, pipeline, &failed, &mut problems).await?;
    for planned in &graph.steps {
        let step = &planned.step;
        if planned.reads.iter().any(|table| failed.contains(table)) {
            failed.insert(step.name.clone());
            continue;
        }
        if let Some(validate) = &step.validate {
            match check_validate(&ctx, validate).await {
                Ok((schema, sql)) => {
                    problems.extend(contract_problems(pipeline, step, &schema));
                    ctx.register_table(step.name.as_str(), Arc::new(EmptyTable::new(schema)))
                        .map_err(|error| EngineError::table(&step.name, error))?;
                    compiled.push(CompiledStep {
                        name: step.name.clone(),
                        kind: step.kind.as_str().to_string(),
                        origin: step.key.clone(),
                        sql,
                    });
                }
                Err((key, error)) => {
                    let key = key.unwrap_or_else(|| step.key.clone());
                    problems.push(
                        pipeline
                            .problem(&key, format!("step `{}`: {}", step.name, describe(&error))),
                    );
                    failed.insert(step.name.clone());
                }
            }
            continue;
        }
        let frame = match ctx.sql_with_options(&step.sql, query_only()).await {
            Ok(frame) => frame,
            Err(error) => {
                let file = step
                    .sql_file
                    .as_ref()
                    .map(|file| format!(" ({})", file.display()))
                    .unwrap_or_default();
                problems.push(pipeline.problem(
                    &step.sql_key(),
                    format!("step `{}`{file}: {}", step.name, describe(&error)),
                ));
                failed.insert(step.name.clone());
                continue;
            }
        };
        let schema = Arc::new(frame.schema().as_arrow().clone());
        problems.extend(contract_problems(pipeline, step, &schema));
        ctx.register_table(step.name.as_str(), Arc::new(EmptyTable::new(schema)))
            .map_err(|error| EngineError::table(&step.name, error))?;
        compiled.push(CompiledStep {
            name: step.name.clone(),
            kind: step.kind.as_str().to_string(),
            origin: step.sql_origin(),
            sql: format!("{};\n", step.sql.trim_end().trim_end_matches(';')),
        });
    }
    let mut value_read = true;
    if let Some(value) = &pipeline.value
        && !failed.contains(&value.input)
    {
        let table = ctx
            .table(value.input.as_str())
            .await
            .map_err(|error| EngineError::table(&value.input, error))?;
        let value_input = table.schema().as_arrow().clone();
        for (key, message) in check_value_schema(&value_input, value) {
            problems.push(pipeline.problem(&key, message));
            value_read = false;
        }
        // The value columns are joined onto the segment input by key: the keys must compare.
        if let Some(segment) = &pipeline.segment
            && value_read
            && value.input != segment.input
            && !failed.contains(&segment.input)
        {
            let segment_input = ctx
                .table(segment.input.as_str())
                .await
                .map_err(|error| EngineError::table(&segment.input, error))?;
            let types = (
                value_input
                    .field_with_name(&value.key)
                    .map(|f| f.data_type().clone()),
                segment_input
                    .schema()
                    .as_arrow()
                    .field_with_name(&segment.key)
                    .map(|f| f.data_type().clone()),
            );
            if let (Ok(value_type), Ok(segment_type)) = types
                && value_type != segment_type
            {
                problems.push(pipeline.problem(
                    "value.key",
                    format!(
                        "`{}` of `{}` is {value_type}, but the segment stage's key `{}` of `{}` is {segment_type}: the value columns are joined on it, so cast one in the SQL",
                        value.key, value.input, segment.key, segment.input
                    ),
                ));
            }
        }
    }
    if let Some(segment) = &pipeline.segment
        && !failed.contains(&segment.input)
        && value_read
    {
        let table = ctx
            .table(segment.input.as_str())
            .await
            .map_err(|error| EngineError::table(&segment.input, error))?;
        let unvalued = table.schema().as_arrow();
        // The segment stage reads its input with the value stage's columns joined on.
        let (input, segment) = match &pipeline.value {
            Some(value) => {
                for name in segflow_pipeline::value_columns(value.spend_model) {
                    if unvalued.field_with_name(name).is_ok() {
                        problems.push(pipeline.problem(
                            "value",
                            format!(
                                "`{}` already has a column `{name}`, which the value stage adds: rename it in the SQL",
                                segment.input
                            ),
                        ));
                    }
                }
                (
                    with_value_columns(unvalued, value),
                    segment_with_value(segment, value),
                )
            }
            None => (unvalued.clone(), segment.clone()),
        };
        let (input, segment) = (&input, &segment);
        match check_segment_schema(input, segment) {
            Err((key, message)) => problems.push(pipeline.problem(&key, message)),
            Ok(()) => {
                // As published: in warehouse types, with the run's columns.
                let planned = Arc::new(planned_segments_schema(input, segment));
                let as_of = pipeline.vars.get("as_of").map(String::as_str);
                match RunColumns::new("check", as_of).published_schema(&planned) {
                    Err(message) => problems
                        .push(pipeline.problem("segment.carry", format!("`segments` {message}"))),
                    Ok(published) => {
                        if let Some(contract) = &segment.contract {
                            problems.extend(
                                contract::schema_problems(contract, &published, "segments")
                                    .into_iter()
                                    .map(|(key, message)| pipeline.problem(&key, message)),
                            );
                        }
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        let read = read_columns(&ctx, pipeline, graph).await?;
        let bucketing = match split_sources {
            Some(sources) if analyse == Analyse::Bucketing => Some(
                crate::bucketing::analyse(&ctx, pipeline, graph, sources)
                    .await
                    .map_err(|(step, error)| EngineError::table(&step, error))?,
            ),
            _ => None,
        };
        Ok((read, compiled, bucketing))
    } else {
        Err(EngineError::Check {
            file: pipeline.file.clone(),
            problems,
        })
    }
}
