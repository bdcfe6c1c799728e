//! Which steps of a pipeline keep customers apart, so that they could run bucket by bucket
//! on the customer key (`partition_key`), and why the others cannot.
//!
//! The sources with a key are split by it; a step that reads a split table is proved
//! safe or refused from its optimised plan ([`super::operators`]); a step that reads only whole
//! tables runs once, and a step that reads a split table *and* a table only all buckets
//! together can give (a refused step's result, or one computed from it) cannot run per
//! bucket either. `segflow plan` shows the outcome.

use std::collections::{HashMap, HashSet};

use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use segflow_pipeline::{CheckKind, Metric, Pipeline};
use segflow_plan::{PlannedStep, StepGraph};

use super::operators::{Analysis, Flow, Reach, Refusal, analyse_plan, keyword_line};

use crate::sql::query_only;
use crate::steps::validate::flagging_sql;

/// Which steps keep customers apart on the pipeline's key.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucketing {
    /// The sources split by the key, each with its key column.
    pub sources: Vec<(String, String)>,
    /// The first step that casts a text key to BIGINT: buckets must be made from the text
    /// parsed as a BIGINT, so that `"012"` and `"12"` share one.
    pub parses_key_in: Option<String>,
    /// Whether rows without a key may be spread over the buckets: no bucketed step groups
    /// them (each drops them before any aggregate, DISTINCT or window), so they need not
    /// share one bucket (guest orders, often a tenth of the lines, would make it the
    /// largest by far).
    pub spreads_null_keys: bool,
    /// In plan order.
    pub steps: Vec<StepBucketing>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepBucketing {
    pub step: String,
    pub runs: Runs,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Runs {
    /// Bucket by bucket: every row it gives comes from one bucket's rows.
    Bucketed {
        /// The columns of its result that hold the key (a later grouping or join on one of
        /// them stays in its bucket); none when the step drops the key.
        key_columns: Vec<String>,
        /// A validate step's table-level checks (row counts, freshness, ...), which are
        /// judged on all buckets together.
        over_all_buckets: Vec<String>,
    },
    /// Once, over whole tables.
    Whole(Whole),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Whole {
    /// It reads no table split by the key.
    NoBucketedInput,
    /// It reads a split table and `table`, which only all buckets together give.
    NeedsAllBuckets { table: String },
    /// Its plan mixes customers: the operator, why, and where in the SQL.
    Refused {
        refusal: Refusal,
        at: Option<String>,
    },
}

impl Bucketing {
    pub fn step(&self, name: &str) -> Option<&Runs> {
        self.steps
            .iter()
            .find(|step| step.step == name)
            .map(|step| &step.runs)
    }
}

/// Analyses every step of `graph` in order, with the tables of `ctx` standing for the
/// sources and steps (as `check` registers them); `sources` are the split sources and
/// their key columns.
pub(crate) async fn analyse(
    ctx: &SessionContext,
    pipeline: &Pipeline,
    graph: &StepGraph,
    sources: Vec<(String, String)>,
) -> Result<Bucketing, (String, DataFusionError)> {
    let setting = |on: bool| async move {
        ctx.sql(&format!("SET datafusion.sql_parser.collect_spans = {on}"))
            .await
            .map_err(|error| (pipeline.name.clone(), error))
    };
    // Plans keep where each column was written only when asked to.
    setting(true).await?;
    let mut split: HashMap<String, Vec<String>> = sources
        .iter()
        .map(|(source, key)| (source.clone(), vec![key.clone()]))
        .collect();
    // Tables only all buckets together give.
    let mut after_buckets: HashSet<String> = HashSet::new();
    let mut bucketing = Bucketing {
        sources,
        parses_key_in: None,
        spreads_null_keys: true,
        steps: Vec::new(),
    };
    // Bucketed tables no row of which has a null key.
    let mut null_free: HashSet<String> = HashSet::new();
    for planned in &graph.steps {
        let name = planned.step.name.clone();
        let reads_split = planned.reads.iter().any(|table| split.contains_key(table));
        let needs_all = planned
            .reads
            .iter()
            .find(|table| after_buckets.contains(*table));
        let runs = match (reads_split, needs_all) {
            (false, needs_all) => {
                if needs_all.is_some() {
                    after_buckets.insert(name.clone());
                }
                Runs::Whole(Whole::NoBucketedInput)
            }
            (true, Some(table)) => Runs::Whole(Whole::NeedsAllBuckets {
                table: table.clone(),
            }),
            (true, None) => {
                let reach = |table: &str| match split.get(table) {
                    Some(keys) => Reach::Bucketed(keys.clone()),
                    None => Reach::Whole,
                };
                let is_null_free = |table: &str| null_free.contains(table);
                let (analysed, over_all_buckets) =
                    analyse_step(ctx, planned, &reach, &is_null_free)
                        .await
                        .map_err(|error| (name.clone(), error))?;
                match analysed {
                    Ok(split_on) => {
                        if split_on.parses_key && bucketing.parses_key_in.is_none() {
                            bucketing.parses_key_in = Some(name.clone());
                        }
                        if split_on.groups_null_keys {
                            bucketing.spreads_null_keys = false;
                        }
                        if split_on.null_free {
                            null_free.insert(name.clone());
                        }
                        match split_on.key_columns {
                            Some(key_columns) => Runs::Bucketed {
                                key_columns,
                                over_all_buckets,
                            },
                            // The optimiser found the split table's rows unneeded.
                            None => Runs::Whole(Whole::NoBucketedInput),
                        }
                    }
                    Err((refusal, origin)) => Runs::Whole(Whole::Refused {
                        at: where_in(planned, &refusal, &origin),
                        refusal,
                    }),
                }
            }
        };
        match &runs {
            Runs::Bucketed { key_columns, .. } => {
                split.insert(name.clone(), key_columns.clone());
            }
            Runs::Whole(Whole::NoBucketedInput) => {}
            Runs::Whole(_) => {
                after_buckets.insert(name.clone());
            }
        }
        bucketing.steps.push(StepBucketing { step: name, runs });
    }
    setting(false).await?;
    Ok(bucketing)
}

/// A step's result as split by the key: the columns holding it (`None`: not split).
struct SplitOn {
    key_columns: Option<Vec<String>>,
    parses_key: bool,
    groups_null_keys: bool,
    null_free: bool,
}

impl SplitOn {
    fn of(analysis: Analysis, schema: &datafusion::common::DFSchema) -> SplitOn {
        SplitOn {
            key_columns: match analysis.flow {
                Flow::Whole => None,
                Flow::Bucketed(held) => Some(
                    held.into_iter()
                        .map(|index| schema.field(index).name().clone())
                        .collect(),
                ),
            },
            parses_key: analysis.parses_key,
            groups_null_keys: analysis.groups_null_keys,
            null_free: analysis.null_free,
        }
    }
}

/// Where a refusal was found: the step's SQL, or a validate step's check (by its key).
enum Origin {
    Sql(String),
    Check(String),
}

type StepAnalysis = (Result<SplitOn, (Refusal, Origin)>, Vec<String>);

/// One step's plan analysed: an SQL step's query, or each of a validate step's row-level
/// checks (their flagging queries). A refusal comes with the SQL it was found in, when
/// the user wrote it. Also the validate step's checks judged on all buckets together.
async fn analyse_step(
    ctx: &SessionContext,
    planned: &PlannedStep,
    reach: &dyn Fn(&str) -> Reach,
    null_free: &dyn Fn(&str) -> bool,
) -> datafusion::error::Result<StepAnalysis> {
    let step = &planned.step;
    let Some(validate) = &step.validate else {
        let plan = ctx
            .sql_with_options(&step.sql, query_only())
            .await?
            .into_optimized_plan()?;
        let analysed = analyse_plan(&plan, reach, null_free)
            .map(|analysis| SplitOn::of(analysis, plan.schema()))
            .map_err(|refusal| (refusal, Origin::Sql(step.sql.clone())));
        return Ok((analysed, Vec::new()));
    };
    let input = ctx.table(validate.input.as_str()).await?;
    let columns: Vec<String> = input
        .schema()
        .fields()
        .iter()
        .map(|field| field.name().clone())
        .collect();
    let mut over_all_buckets = Vec::new();
    let mut parses_key = false;
    let mut groups_null_keys = false;
    let input_keys = match reach(&validate.input) {
        Reach::Bucketed(keys) => keys,
        Reach::Whole => Vec::new(),
    };
    for check in &validate.checks {
        if !check.kind.is_row_level() {
            if let Some(reason) = judged_only_whole(check, &input_keys) {
                let refusal = Refusal {
                    operator: "check",
                    reason: format!("check `{}`: {reason}", check.name),
                    line: None,
                    keyword: "",
                };
                return Ok((
                    Err((refusal, Origin::Check(check.key.clone()))),
                    over_all_buckets,
                ));
            }
            over_all_buckets.push(check.name.clone());
            continue;
        }
        let single = segflow_pipeline::Validate {
            checks: vec![check.clone()],
            ..validate.clone()
        };
        let plan = ctx
            .sql_with_options(&flagging_sql(&single, &columns), query_only())
            .await?
            .into_optimized_plan()?;
        match analyse_plan(&plan, reach, null_free) {
            Ok(analysis) => {
                parses_key |= analysis.parses_key;
                groups_null_keys |= analysis.groups_null_keys;
            }
            Err(mut refusal) => {
                refusal.reason = format!("check `{}`: {}", check.name, refusal.reason);
                return Ok((
                    Err((refusal, Origin::Check(check.key.clone()))),
                    over_all_buckets,
                ));
            }
        }
    }
    // A validate step's result is its input's rows and columns.
    let key_columns = match reach(&validate.input) {
        Reach::Bucketed(keys) => Some(keys),
        Reach::Whole => None,
    };
    Ok((
        Ok(SplitOn {
            key_columns,
            parses_key,
            groups_null_keys,
            // Its rows are its input's.
            null_free: null_free(&validate.input),
        }),
        over_all_buckets,
    ))
}

/// Why a table-level check cannot be judged from what each bucket measures, if it cannot:
/// an `sql` check runs a query of its own over whole tables, and distinct values of a
/// column that is not the key may repeat across buckets.
fn judged_only_whole(check: &segflow_pipeline::Check, keys: &[String]) -> Option<String> {
    match &check.kind {
        CheckKind::Sql { .. } => {
            Some("an sql check runs its own query over whole tables".to_string())
        }
        CheckKind::Change {
            metric: Metric::Distinct,
            column: Some(column),
            ..
        } if !keys.contains(column) => Some(format!(
            "distinct values of `{column}`, not the key, are counted over all rows at once"
        )),
        _ => None,
    }
}

/// "line 12 of sql/retail/daily_purchases.sql", or of the step's inline SQL; a validate
/// step's check, by its key.
fn where_in(planned: &PlannedStep, refusal: &Refusal, origin: &Origin) -> Option<String> {
    let step = &planned.step;
    let sql = match origin {
        Origin::Check(key) => return Some(key.clone()),
        Origin::Sql(sql) => sql,
    };
    let line = refusal
        .line
        .or_else(|| keyword_line(sql, refusal.keyword))?;
    Some(match &step.sql_file {
        Some(file) => format!("line {line} of {}", file.display()),
        None => format!("line {line} of {}", step.sql_key()),
    })
}
