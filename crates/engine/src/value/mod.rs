//! The value stage: each customer's chance of still being active and expected value, from
//! the purchase history, with segflow-value's models.
//!
//! [`run_value`] checks and reads the input ([`input`]), fits the purchase model on the
//! distinct histories and the spend model on the repeat customers, predicts per distinct
//! history (the predictions depend on nothing else but the spend) and registers one row
//! per customer as a table the segment stage's input is joined with
//! ([`extend_segment_input`]), so that its columns can be features and are published in
//! `segments/`. Once segments exist, [`Valued::summarize`] sums them up per segment
//! ([`outputs`]). A pipeline without a segment stage publishes the customers' values as
//! `values/` ([`register_values_view`]) and sums them up over all customers.

mod input;
mod outputs;

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, AsArray, Float64Array, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, UInt32Type};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use rayon::iter::{IntoParallelIterator, ParallelIterator};
use segflow_pipeline::{PurchaseModelKind, Segment, Value, value_columns};
use segflow_publish::Staging;
use segflow_value::{Patterns, PurchaseModel, clv};

pub use input::{check_value_schema, with_value_columns};

use crate::report::{SegmentReport, ValueReport};
use crate::sql::quote;
use crate::{EngineError, Result};
use input::{Sorted, read_value_input, rejects_batch, sample_keys, sort_customers};

/// The table of one row per valued customer: the key, the value columns and the
/// customer's place in the canonical order ([`input::Sorted`]).
pub const VALUE_TABLE: &str = "__segflow_value";
const RANK: &str = "__segflow_value_rank";
/// The segment input as the steps left it, read by the view that adds the value columns.
const UNVALUED_INPUT: &str = "__segflow_unvalued_input";
/// The staged `segments/`, read back to sum the value up per segment.
const STAGED_SEGMENTS: &str = "__segflow_staged_segments";
/// The `values` table of a pipeline without a segment stage, as a view to stage.
pub const VALUES_VIEW: &str = "__segflow_values";
/// What `ltv.parquet` calls the customers of a pipeline without segments.
pub const ALL_CUSTOMERS: &str = "all customers";

/// What the stage predicted per distinct history, for the per-segment tables.
struct Predicted {
    p_alive: f64,
    expected_purchases: f64,
    /// Month by month over the horizon.
    monthly_purchases: Vec<f64>,
    /// The CLV per unit of spend: the monthly purchases discounted.
    discounted_purchases: f64,
    /// The chance of being active at each month's end.
    monthly_alive: Vec<f64>,
    /// Expected purchases over `evaluate.period`.
    in_evaluation: Option<f64>,
}

/// The value stage once fitted: its report, its files, and what the per-segment tables
/// need.
pub struct Valued {
    pub report: ValueReport,
    files: ValueFiles,
    predicted: Vec<Predicted>,
    /// Per customer in the canonical order: the index of its history in `predicted`, and
    /// with a spend model the expected spend per purchase.
    pattern_at: Vec<u32>,
    spend_at: Option<Vec<f64>>,
    discount_rate: f64,
    months: u32,
}

/// Fits the models and registers [`VALUE_TABLE`]; what it writes waits in [`Valued`]'s
/// files for [`Valued::stage`].
pub async fn run_value(ctx: &SessionContext, value: &Value) -> Result<Valued> {
    let started = Instant::now();
    let mut files = ValueFiles::default();
    let phase = |name: &str, since: Instant| {
        tracing::debug!(
            phase = name,
            ms = since.elapsed().as_millis() as u64,
            "value stage"
        );
        Instant::now()
    };
    let read = read_value_input(ctx, value).await?;
    let mark = phase("read", started);
    // Two passes over every customer that need nothing of each other, each on a core of
    // its own for most of its time.
    let (key_problems, customers) = rayon::join(
        || crate::keys::key_problems_in(&read.keys),
        || sort_customers(&read, value),
    );
    let key_problems = key_problems.map_err(|error| EngineError::Value(error.to_string()))?;
    if key_problems != (0, 0) {
        return Err(EngineError::ValueData(crate::keys::key_message(
            &value.input,
            &value.key,
            key_problems,
        )));
    }
    let refused = &customers.refused;
    if !refused.is_empty() {
        if !value.quarantine_invalid {
            return Err(EngineError::ValueData(format!(
                "{} customer(s) of `{}` have a history the models cannot read, e.g. {}; set `on_invalid: quarantine` to set them aside in rejects/value/",
                refused.len(),
                value.input,
                sample_keys(&read, refused).join(", ")
            )));
        }
        files.rejects = Some(rejects_batch(&read, value, refused)?);
    }
    let mark = phase("keys checked, customers sorted", mark);
    let (patterns, pattern_at) = Patterns::of_sorted(&customers.histories);
    let mark = phase("distinct histories", mark);
    let model = purchase_model(value.purchase_model);
    // The two models are fitted on separate data: side by side, each fills the gaps (its
    // optimiser's steps, its sequential parts) the other leaves on the cores.
    let spends = customers.spends.as_deref().unwrap_or_default();
    let (fit, spend_fit) = rayon::join(
        || model.fit(&patterns, value.penalizer),
        || {
            value.spend_model.map(|_| {
                // In the canonical order already: no sort needed for a sum that does not
                // depend on the order customers were read in.
                segflow_value::spend::fit_in_order(spends, value.penalizer)
            })
        },
    );
    let fit =
        fit.map_err(|error| EngineError::ValueData(format!("{error} (`{}`)", value.input)))?;
    if !fit.converged {
        return Err(EngineError::ValueData(format!(
            "{} did not converge on `{}` ({}): raise `value.penalizer` (e.g. 0.001) to keep its parameters in range",
            model.as_str(),
            value.input,
            match fit.iterations {
                Some(iterations) => format!("{iterations} iterations"),
                None => format!(
                    "the line search stopped after {} evaluations",
                    fit.evaluations
                ),
            }
        )));
    }
    let spend_fit = match spend_fit {
        None => None,
        Some(spend_fit) => {
            let spend_fit = spend_fit
                .map_err(|error| EngineError::ValueData(format!("{error} (`{}`)", value.input)))?;
            if !spend_fit.converged {
                return Err(EngineError::ValueData(format!(
                    "gamma_gamma did not converge on `{}`: raise `value.penalizer` (e.g. 0.001)",
                    value.input
                )));
            }
            Some(spend_fit)
        }
    };
    let per_month = value.time_unit.per_month();
    let evaluation_periods = value
        .evaluate
        .as_ref()
        .map(|evaluate| evaluate.period_days / value.time_unit.days());
    let mark = phase("fits", mark);
    // The months' ends, then the evaluation period: what the forecasts are asked for.
    let mut times: Vec<f64> = (1..=value.horizon_months)
        .map(|month| f64::from(month) * per_month)
        .collect();
    times.extend(evaluation_periods);
    let months = value.horizon_months as usize;
    let predicted: Vec<Predicted> = fit
        .forecast(&patterns, &times)
        .into_par_iter()
        .map(|forecast| {
            // Each month's purchases are a difference of cumulative expectations, as
            // lifetimes computes them; they add up to the horizon's.
            let mut before = 0.0;
            let monthly_purchases: Vec<f64> = forecast.purchases[..months]
                .iter()
                .map(|&cumulative| {
                    let in_month = cumulative - before;
                    before = cumulative;
                    in_month
                })
                .collect();
            Predicted {
                p_alive: forecast.p_alive,
                expected_purchases: monthly_purchases.iter().sum(),
                discounted_purchases: clv::discounted_purchases(
                    &monthly_purchases,
                    value.discount_rate,
                ),
                monthly_purchases,
                monthly_alive: forecast.alive[..months].to_vec(),
                in_evaluation: evaluation_periods.map(|_| forecast.purchases[months]),
            }
        })
        .collect();
    if let Some(bad) = predicted.iter().position(|p| {
        !(p.p_alive.is_finite() && p.expected_purchases.is_finite())
            || p.monthly_purchases.iter().any(|m| !m.is_finite())
    }) {
        let history = patterns.histories[bad];
        return Err(EngineError::ValueData(format!(
            "{} cannot predict a customer with frequency {}, recency {} and T {} ({}s) with its fitted parameters {:?}: try another purchase_model or a `penalizer`",
            model.as_str(),
            history.frequency,
            history.recency,
            history.age,
            value.time_unit.as_str(),
            fit.params
        )));
    }
    let spend_at: Option<Vec<f64>> = spend_fit.as_ref().map(|spend_fit| {
        customers
            .spends
            .iter()
            .flatten()
            .map(|spend| spend_fit.expected_spend(spend))
            .collect()
    });
    let mark = phase("predictions", mark);
    let pattern_at: Vec<u32> = pattern_at.into_iter().map(|p| p as u32).collect();
    let table = customer_table(
        value,
        &read.keys,
        &customers,
        &pattern_at,
        spend_at.as_deref(),
        &predicted,
    )?;
    let provider = MemTable::try_new(table.schema(), vec![vec![table]])
        .map_err(|error| EngineError::Value(error.to_string()))?;
    ctx.deregister_table(VALUE_TABLE)
        .and_then(|_| ctx.register_table(VALUE_TABLE, Arc::new(provider)))
        .map_err(|error| EngineError::Value(error.to_string()))?;

    phase("customer table", mark);
    let evaluation = match &value.evaluate {
        None => None,
        Some(evaluate) => {
            let rows: Vec<(f64, f64, f64)> = customers
                .histories
                .iter()
                .zip(&pattern_at)
                .zip(customers.actual_purchases.iter().flatten())
                .filter_map(|((history, &pattern), &actual)| {
                    Some((
                        history.frequency,
                        predicted[pattern as usize].in_evaluation?,
                        actual,
                    ))
                })
                .collect();
            let (batch, report) = outputs::evaluation(&rows, evaluate.period_days)?;
            files.evaluation = Some(batch);
            Some(report)
        }
    };
    let report = ValueReport {
        input: value.input.clone(),
        purchase_model: model.as_str().to_string(),
        params: model
            .param_names()
            .iter()
            .map(|name| name.to_string())
            .zip(fit.params)
            .collect(),
        log_likelihood: fit.log_likelihood,
        iterations: fit.iterations,
        converged: fit.converged,
        spend_model: spend_fit.as_ref().map(|_| "gamma_gamma".to_string()),
        spend_params: spend_fit.as_ref().map(|spend| {
            segflow_value::spend::PARAM_NAMES
                .iter()
                .map(|name| name.to_string())
                .zip(spend.params)
                .collect()
        }),
        time_unit: value.time_unit.as_str().to_string(),
        horizon_months: value.horizon_months,
        discount_rate: value.discount_rate,
        customers: customers.len() as u64,
        customers_quarantined: refused.len() as u64,
        distinct_histories: patterns.len() as u64,
        evaluation,
        segments: Vec::new(),
        duration_ms: 0,
    };
    let model_file = outputs::model_file(&report, &fit, spend_fit.as_ref(), &patterns);
    files.model = serde_json::to_vec_pretty(&model_file).expect("a model file serialises");
    Ok(Valued {
        files,
        report: ValueReport {
            duration_ms: started.elapsed().as_millis() as u64,
            ..report
        },
        predicted,
        pattern_at,
        spend_at,
        discount_rate: value.discount_rate,
        months: value.horizon_months,
    })
}

/// What the value stage publishes besides its columns.
#[derive(Default)]
struct ValueFiles {
    /// `rejects/value/`, with `on_invalid: quarantine`.
    rejects: Option<RecordBatch>,
    /// `value_evaluation.parquet`, with `evaluate`.
    evaluation: Option<RecordBatch>,
    /// `value_model.json`.
    model: Vec<u8>,
}

impl Valued {
    /// Writes the stage's files to the run's staging folder.
    pub async fn stage(&mut self, staging: &mut Staging) -> Result<()> {
        let files = std::mem::take(&mut self.files);
        for (table, batch) in [
            ("rejects/value", files.rejects),
            ("value_evaluation", files.evaluation),
        ] {
            if let Some(batch) = batch {
                staging
                    .write_parquet(table, &format!("{table}.parquet"), batch.schema(), &[batch])
                    .await?;
            }
        }
        staging.write_bytes("value_model.json", files.model).await?;
        Ok(())
    }
}

fn purchase_model(kind: PurchaseModelKind) -> PurchaseModel {
    match kind {
        PurchaseModelKind::BgNbd => PurchaseModel::BgNbd,
        PurchaseModelKind::MbgNbd => PurchaseModel::MbgNbd,
        PurchaseModelKind::ParetoNbd => PurchaseModel::ParetoNbd,
    }
}

/// One row per valued customer, in the canonical order: the key, the value columns, the
/// customer's place in that order.
fn customer_table(
    value: &Value,
    keys: &ArrayRef,
    customers: &Sorted,
    pattern_at: &[u32],
    spend_at: Option<&[f64]>,
    predicted: &[Predicted],
) -> Result<RecordBatch> {
    let failed = |error: arrow::error::ArrowError| EngineError::Value(error.to_string());
    let of = |f: &dyn Fn(&Predicted) -> f64| -> Float64Array {
        Float64Array::from_iter_values(
            pattern_at
                .iter()
                .map(|&pattern| f(&predicted[pattern as usize])),
        )
    };
    // The columns need nothing of each other: half of them on each core.
    let ((keys, p_alive, purchases), spend_columns) = rayon::join(
        || {
            let rows = UInt32Array::from(customers.rows.clone());
            (
                take(keys, &rows, None),
                of(&|p| p.p_alive),
                of(&|p| p.expected_purchases),
            )
        },
        || {
            spend_at.map(|spend_at| {
                let clv = Float64Array::from_iter_values(spend_at.iter().zip(pattern_at).map(
                    |(spend, &pattern)| spend * predicted[pattern as usize].discounted_purchases,
                ));
                (Float64Array::from(spend_at.to_vec()), clv)
            })
        },
    );
    let keys = keys.map_err(failed)?;
    let mut fields = vec![Field::new(&value.key, keys.data_type().clone(), false)];
    let mut columns: Vec<ArrayRef> = vec![keys];
    let names = value_columns(value.spend_model);
    let mut add = |name: &str, array: Float64Array| {
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(Arc::new(array));
    };
    add(names[0], p_alive);
    add(names[1], purchases);
    if let Some((spend, clv)) = spend_columns {
        add(names[2], spend);
        add(names[3], clv);
    }
    fields.push(Field::new(RANK, DataType::UInt32, false));
    columns.push(Arc::new(UInt32Array::from_iter_values(
        0..customers.len() as u32,
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(failed)
}

/// The segment stage's settings reading `segment.input` with the value columns joined on
/// (left: a customer the value stage set aside has nulls), carried into `segments/` unless
/// they are features. In the session, `segment.input` becomes a view that adds them.
pub async fn extend_segment_input(
    ctx: &SessionContext,
    value: &Value,
    segment: &Segment,
) -> Result<Segment> {
    let failed =
        |error: datafusion::error::DataFusionError| EngineError::table(&segment.input, error);
    let provider = ctx
        .table_provider(segment.input.as_str())
        .await
        .map_err(failed)?;
    ctx.deregister_table(segment.input.as_str())
        .map_err(failed)?;
    ctx.register_table(UNVALUED_INPUT, provider)
        .map_err(failed)?;
    let added = value_columns(value.spend_model);
    let selected: Vec<String> = added
        .iter()
        .map(|name| format!("v.{}", quote(name)))
        .collect();
    let sql = format!(
        "SELECT i.*, {} FROM {UNVALUED_INPUT} i LEFT JOIN {VALUE_TABLE} v ON i.{} = v.{}",
        selected.join(", "),
        quote(&segment.key),
        quote(&value.key)
    );
    let view = ctx.sql(&sql).await.map_err(failed)?.into_view();
    ctx.register_table(segment.input.as_str(), view)
        .map_err(failed)?;
    Ok(segment_with_value(segment, value))
}

/// `segment` with the value columns that are not features carried into `segments/`.
pub fn segment_with_value(segment: &Segment, value: &Value) -> Segment {
    let mut extended = segment.clone();
    for name in value_columns(value.spend_model) {
        let name = name.to_string();
        if !extended.features.contains(&name) && !extended.carry.contains(&name) {
            extended.carry.push(name);
        }
    }
    extended
}

/// Registers [`VALUES_VIEW`]: every valued customer of the input (not those set aside) with
/// the key, the history's columns as the input has them and the value columns, by key.
pub async fn register_values_view(ctx: &SessionContext, value: &Value) -> Result<()> {
    let failed =
        |error: datafusion::error::DataFusionError| EngineError::table(&value.input, error);
    let key = quote(&value.key);
    let mut selected = vec![format!("i.{key}")];
    selected.extend(
        value
            .columns
            .named()
            .into_iter()
            .map(|(_, column)| format!("i.{}", quote(column))),
    );
    if let Some(evaluate) = &value.evaluate {
        selected.push(format!("i.{}", quote(&evaluate.actual_purchases)));
    }
    selected.extend(
        value_columns(value.spend_model)
            .iter()
            .map(|name| format!("v.{}", quote(name))),
    );
    let sql = format!(
        "SELECT {} FROM {} i JOIN {VALUE_TABLE} v ON i.{key} = v.{key} ORDER BY i.{key}",
        selected.join(", "),
        quote(&value.input),
    );
    let view = ctx.sql(&sql).await.map_err(failed)?.into_view();
    ctx.deregister_table(VALUES_VIEW)
        .and_then(|_| ctx.register_table(VALUES_VIEW, view))
        .map_err(failed)?;
    Ok(())
}

/// What the value is summed up over.
#[derive(Clone, Copy)]
pub enum Grouping<'a> {
    /// The staged `segments/`: `value_by_segment.parquet` and `ltv.parquet` per segment.
    Segments(&'a SegmentReport),
    /// Every valued customer as one group ([`ALL_CUSTOMERS`], id 0), in a pipeline without
    /// segments: `ltv.parquet` only.
    Everyone,
}

impl Valued {
    /// Sums the value up per group: `ltv.parquet`, per segment `value_by_segment.parquet`
    /// too, and the report's per-group lines.
    pub async fn summarize(
        &mut self,
        ctx: &SessionContext,
        staging: &mut Staging,
        grouping: Grouping<'_>,
        value: &Value,
    ) -> Result<()> {
        let started = Instant::now();
        let (group_at, names) = match grouping {
            Grouping::Segments(segment) => {
                let group_at = self.segment_at_rank(ctx, staging, segment, value).await?;
                let names: Vec<(u32, String)> = segment
                    .ids
                    .iter()
                    .copied()
                    .zip(segment.names.iter().cloned())
                    .collect();
                (group_at, names)
            }
            Grouping::Everyone => (
                vec![0; self.pattern_at.len()],
                vec![(0, ALL_CUSTOMERS.to_string())],
            ),
        };
        let tables = outputs::by_segment(
            &outputs::Customers {
                group_at: &group_at,
                pattern_at: &self.pattern_at,
                spend_at: self.spend_at.as_deref(),
                predicted: &self.predicted,
            },
            &names,
            self.months,
            self.discount_rate,
            self.spend_at.is_some(),
        )?;
        if matches!(grouping, Grouping::Segments(_)) {
            staging
                .write_parquet(
                    "value_by_segment",
                    "value_by_segment.parquet",
                    tables.by_segment.schema(),
                    &[tables.by_segment],
                )
                .await?;
        }
        staging
            .write_parquet("ltv", "ltv.parquet", tables.ltv.schema(), &[tables.ltv])
            .await?;
        self.report.segments = tables.report;
        self.report.duration_ms += started.elapsed().as_millis() as u64;
        tracing::debug!(
            phase = "summaries",
            ms = started.elapsed().as_millis() as u64,
            "value stage"
        );
        Ok(())
    }
}

/// Marks a customer the segment stage did not segment.
const UNSEGMENTED: u32 = u32::MAX;

impl Valued {
    /// Per customer in the canonical order, the position in `segment.ids` of its segment
    /// as staged in `segments/` ([`UNSEGMENTED`] for none), by key.
    async fn segment_at_rank(
        &self,
        ctx: &SessionContext,
        staging: &Staging,
        segment: &SegmentReport,
        value: &Value,
    ) -> Result<Vec<u32>> {
        let failed =
            |error: datafusion::error::DataFusionError| EngineError::Value(error.to_string());
        let segments_url = format!("{}segments/", staging.url());
        ctx.register_parquet(
            STAGED_SEGMENTS,
            &segments_url,
            datafusion::prelude::ParquetReadOptions::default(),
        )
        .await
        .map_err(failed)?;
        let sql = format!(
            "SELECT s.{id}, v.{RANK} FROM {STAGED_SEGMENTS} s JOIN {VALUE_TABLE} v ON s.{sk} = v.{vk}",
            id = quote(segflow_cluster::SEGMENT_ID),
            sk = quote(&segment.key),
            vk = quote(&value.key),
        );
        let batches = ctx.sql(&sql).await.map_err(failed)?.collect().await;
        ctx.deregister_table(STAGED_SEGMENTS).map_err(failed)?;
        let batches = batches.map_err(failed)?;
        let mut group_at = vec![UNSEGMENTED; self.pattern_at.len()];
        for batch in &batches {
            let ids = batch.column(0).as_primitive::<Int32Type>();
            let ranks = batch.column(1).as_primitive::<UInt32Type>();
            for (id, rank) in ids.values().iter().zip(ranks.values()) {
                if let Some(position) = segment.ids.iter().position(|known| *known as i32 == *id) {
                    group_at[*rank as usize] = position as u32;
                }
            }
        }
        Ok(group_at)
    }
}
