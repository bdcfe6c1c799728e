//! Which columns of each step's result later steps read, worked out from the readers'
//! optimised plans, so a run holds (and computes) only those.

use std::collections::{HashMap, HashSet};

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use segflow_pipeline::Pipeline;
use segflow_plan::{PlannedStep, StepGraph};

use crate::sql::{is_flag_column, only_columns, query_only, validated_step};
use crate::{EngineError, Result};

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
pub async fn read_columns(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    graph: &StepGraph,
) -> Result<ReadColumns> {
    let mut read = ReadColumns::default();
    // Per SQL step, the columns of each table its plan reads.
    let mut reads_of_sql_steps: HashMap<&str, HashMap<String, Vec<String>>> = HashMap::new();
    for planned in graph.steps.iter().rev() {
        let step = &planned.step;
        let name = step.name.as_str();
        let planning = |error| EngineError::step(step, error);
        if let Some(columns) = held_columns(ctx, pipeline, graph, planned, &reads_of_sql_steps)
            .await
            .map_err(planning)?
        {
            read.0.insert(name.to_string(), columns);
        }
        if step.validate.is_none() {
            let mut frame = ctx
                .sql_with_options(&step.sql, query_only())
                .await
                .map_err(planning)?;
            if let Some(columns) = read.of(name) {
                frame = only_columns(ctx, frame, columns).map_err(planning)?;
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
) -> DFResult<Option<Vec<String>>> {
    let name = planned.step.name.as_str();
    if pipeline.read_after_steps().contains(&name) {
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

/// Per table a query reads, the columns it uses (after DataFusion pushed projections down
/// to the scans). A validate step's output is a view over its flagged input, so a scan of
/// that input counts as reading the step, its flag columns left out.
pub async fn used_columns(
    ctx: &SessionContext,
    sql: &str,
) -> DFResult<HashMap<String, Vec<String>>> {
    used_columns_of(ctx.sql_with_options(sql, query_only()).await?)
}

/// As [`used_columns`], of a query planned already.
pub fn used_columns_of(frame: DataFrame) -> DFResult<HashMap<String, Vec<String>>> {
    let plan = frame.into_optimized_plan()?;
    let mut used: HashMap<String, Vec<String>> = HashMap::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let table = scan.table_name.table();
            let table = validated_step(table).unwrap_or(table);
            let columns = used.entry(table.to_string()).or_default();
            for field in scan.projected_schema.fields() {
                if !is_flag_column(field.name()) && !columns.contains(field.name()) {
                    columns.push(field.name().clone());
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(used)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    fn names(columns: &[&str]) -> Option<Vec<String>> {
        Some(columns.iter().map(|column| column.to_string()).collect())
    }

    #[tokio::test]
    async fn results_hold_only_the_columns_later_steps_read() {
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/customer_segments.yaml");
        let pipeline = segflow_pipeline::load(&example, &BTreeMap::new()).unwrap();
        let graph = segflow_plan::plan(&pipeline).unwrap();
        let read = crate::check::check_schemas(&pipeline, &graph)
            .await
            .unwrap();
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
