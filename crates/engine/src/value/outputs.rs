//! What the value stage writes besides the customers' columns: `value_model.json`,
//! `value_evaluation.parquet`, and per segment `value_by_segment.parquet` and
//! `ltv.parquet`.

use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use rayon::slice::ParallelSliceMut;
use segflow_value::{Patterns, PurchaseFit, SpendFit, clv};

use super::Predicted;
use crate::report::{EvaluationReport, ValueReport, ValueSegmentReport};
use crate::{EngineError, Result};

fn failed(error: arrow::error::ArrowError) -> EngineError {
    EngineError::Value(error.to_string())
}

/// `value_model.json`: the fitted models, and a summary of the data they were fitted on.
pub fn model_file(
    report: &ValueReport,
    fit: &PurchaseFit,
    spend: Option<&SpendFit>,
    patterns: &Patterns,
) -> serde_json::Value {
    let customers = patterns.customers();
    let mean = |f: &dyn Fn(&segflow_value::History) -> f64| {
        patterns
            .histories
            .iter()
            .zip(&patterns.weights)
            .map(|(h, w)| f(h) * w)
            .sum::<f64>()
            / customers
    };
    let repeat: f64 = patterns
        .histories
        .iter()
        .zip(&patterns.weights)
        .filter(|(h, _)| h.frequency > 0.0)
        .map(|(_, w)| w)
        .sum();
    serde_json::json!({
        "purchase_model": {
            "model": report.purchase_model,
            "params": report.params,
            "log_likelihood": fit.log_likelihood,
            "iterations": fit.iterations,
            "evaluations": fit.evaluations,
            "converged": fit.converged,
        },
        "spend_model": spend.map(|spend| serde_json::json!({
            "model": "gamma_gamma",
            "params": report.spend_params,
            "log_likelihood": spend.log_likelihood,
            "iterations": spend.iterations,
            "evaluations": spend.evaluations,
            "converged": spend.converged,
            "customers": spend.customers,
        })),
        "time_unit": report.time_unit,
        "horizon_months": report.horizon_months,
        "discount_rate": report.discount_rate,
        "data": {
            "input": report.input,
            "customers": report.customers,
            "customers_quarantined": report.customers_quarantined,
            "distinct_histories": report.distinct_histories,
            "repeat_customers": repeat,
            "mean_frequency": mean(&|h| h.frequency),
            "mean_recency": mean(&|h| h.recency),
            "mean_T": mean(&|h| h.age),
            "max_T": patterns.histories.iter().map(|h| h.age).fold(0.0_f64, f64::max),
        },
        "evaluation": report.evaluation,
    })
}

/// Calibration frequencies 0 to 6 each in a row of their own, then `7+`, then `all`.
const FREQUENCY_ROWS: usize = 8;

/// Predicted against actual purchases in the later period, per calibration frequency,
/// from (frequency, predicted, actual) per customer.
pub fn evaluation(
    rows: &[(f64, f64, f64)],
    period_days: f64,
) -> Result<(RecordBatch, EvaluationReport)> {
    #[derive(Default, Clone, Copy)]
    struct Sums {
        customers: u64,
        actual: f64,
        predicted: f64,
        absolute_error: f64,
    }
    let mut buckets = [Sums::default(); FREQUENCY_ROWS + 1];
    // In a fixed order, so that the sums do not depend on the order customers came in.
    let mut rows = rows.to_vec();
    // Rows equal in all three are equal in every value they add.
    rows.par_sort_unstable_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then(a.1.total_cmp(&b.1))
            .then(a.2.total_cmp(&b.2))
    });
    for &(frequency, predicted, actual) in &rows {
        let bucket = (frequency as usize).min(FREQUENCY_ROWS - 1);
        for index in [bucket, FREQUENCY_ROWS] {
            let sums = &mut buckets[index];
            sums.customers += 1;
            sums.actual += actual;
            sums.predicted += predicted;
            sums.absolute_error += (predicted - actual).abs();
        }
    }
    let labels: Vec<String> = (0..FREQUENCY_ROWS - 1)
        .map(|f| f.to_string())
        .chain([format!("{}+", FREQUENCY_ROWS - 1), "all".to_string()])
        .collect();
    let per_customer =
        |sum: f64, sums: &Sums| (sums.customers > 0).then(|| sum / sums.customers as f64);
    let schema = Arc::new(Schema::new(vec![
        Field::new("frequency", DataType::Utf8, false),
        Field::new("customers", DataType::Int64, false),
        Field::new("actual_purchases", DataType::Float64, false),
        Field::new("predicted_purchases", DataType::Float64, false),
        Field::new("mean_actual_purchases", DataType::Float64, true),
        Field::new("mean_predicted_purchases", DataType::Float64, true),
        Field::new("mean_absolute_error", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(&labels)),
            Arc::new(Int64Array::from_iter_values(
                buckets.iter().map(|b| b.customers as i64),
            )),
            Arc::new(Float64Array::from_iter_values(
                buckets.iter().map(|b| b.actual),
            )),
            Arc::new(Float64Array::from_iter_values(
                buckets.iter().map(|b| b.predicted),
            )),
            Arc::new(Float64Array::from_iter(
                buckets.iter().map(|b| per_customer(b.actual, b)),
            )),
            Arc::new(Float64Array::from_iter(
                buckets.iter().map(|b| per_customer(b.predicted, b)),
            )),
            Arc::new(Float64Array::from_iter(
                buckets.iter().map(|b| per_customer(b.absolute_error, b)),
            )),
        ],
    )
    .map_err(failed)?;
    let all = buckets[FREQUENCY_ROWS];
    let report = EvaluationReport {
        period_days,
        customers: all.customers,
        actual_purchases: all.actual,
        predicted_purchases: all.predicted,
        mean_absolute_error: per_customer(all.absolute_error, &all).unwrap_or(0.0),
    };
    Ok((batch, report))
}

pub struct BySegment {
    pub by_segment: RecordBatch,
    pub ltv: RecordBatch,
    pub report: Vec<ValueSegmentReport>,
}

/// The valued customers, each at its place in the value stage's canonical order (by
/// history, then spend).
pub struct Customers<'a> {
    /// The position of the customer's group in the names summed up over, or
    /// [`super::UNSEGMENTED`].
    pub group_at: &'a [u32],
    /// The index of the customer's history in `predicted`.
    pub pattern_at: &'a [u32],
    /// The expected spend per purchase, with a spend model.
    pub spend_at: Option<&'a [f64]>,
    pub predicted: &'a [Predicted],
}

/// A group's sums, added run by run: a run is the group's customers of one history, next
/// to each other in the canonical order, so the history's monthly figures are added once
/// per run (times its customers and their spend), not once per customer.
struct SegmentSums {
    customers: u64,
    p_alive: Vec<f64>,
    expected_purchases: f64,
    expected_revenue: f64,
    clv: f64,
    active_now: f64,
    active: Vec<f64>,
    purchases: Vec<f64>,
    revenue: Vec<f64>,
    /// The run being gathered: its history, customers and their summed spend.
    run: Option<(u32, f64, f64)>,
}

impl SegmentSums {
    fn new(months: usize) -> SegmentSums {
        SegmentSums {
            customers: 0,
            p_alive: Vec::new(),
            expected_purchases: 0.0,
            expected_revenue: 0.0,
            clv: 0.0,
            active_now: 0.0,
            active: vec![0.0; months],
            purchases: vec![0.0; months],
            revenue: vec![0.0; months],
            run: None,
        }
    }

    /// Adds a customer of history `pattern` (0 spend without a spend model).
    fn add(&mut self, pattern: u32, spend: f64, predicted: &[Predicted]) {
        match &mut self.run {
            Some((current, customers, spent)) if *current == pattern => {
                *customers += 1.0;
                *spent += spend;
            }
            _ => {
                self.close_run(predicted);
                self.run = Some((pattern, 1.0, spend));
            }
        }
        self.customers += 1;
        self.p_alive.push(predicted[pattern as usize].p_alive);
    }

    fn close_run(&mut self, predicted: &[Predicted]) {
        let Some((pattern, customers, spent)) = self.run.take() else {
            return;
        };
        let history = &predicted[pattern as usize];
        self.active_now += customers * history.p_alive;
        self.expected_purchases += customers * history.expected_purchases;
        self.expected_revenue += spent * history.expected_purchases;
        self.clv += spent * history.discounted_purchases;
        for month in 0..self.active.len() {
            self.active[month] += customers * history.monthly_alive[month];
            self.purchases[month] += customers * history.monthly_purchases[month];
            self.revenue[month] += spent * history.monthly_purchases[month];
        }
    }
}

/// Sums every grouped customer's value up per group, in the order of `names`.
pub fn by_segment(
    customers: &Customers,
    names: &[(u32, String)],
    months: u32,
    discount_rate: f64,
    priced: bool,
) -> Result<BySegment> {
    let mut sums: Vec<SegmentSums> = names
        .iter()
        .map(|_| SegmentSums::new(months as usize))
        .collect();
    for (at, (&group, &pattern)) in customers
        .group_at
        .iter()
        .zip(customers.pattern_at)
        .enumerate()
    {
        if let Some(sums) = sums.get_mut(group as usize) {
            let spend = customers.spend_at.map_or(0.0, |spend_at| spend_at[at]);
            sums.add(pattern, spend, customers.predicted);
        }
    }
    for group in &mut sums {
        group.close_run(customers.predicted);
    }
    let total_clv: f64 = sums.iter().map(|s| s.clv).sum();
    let mut report = Vec::new();
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    let mut customers = Vec::new();
    let mut mean_p = Vec::new();
    let mut median_p = Vec::new();
    let mut expected_purchases = Vec::new();
    let mut expected_revenue = Vec::new();
    let mut total = Vec::new();
    let mut mean_clv = Vec::new();
    let mut share = Vec::new();
    for ((id, name), segment) in names.iter().zip(&mut sums) {
        let count = segment.customers as usize;
        let mean = |sum: f64| (count > 0).then(|| sum / count as f64);
        let p_sum = segment.active_now;
        let median = median(&mut segment.p_alive);
        ids.push(*id as i32);
        labels.push(name.clone());
        customers.push(count as i64);
        mean_p.push(mean(p_sum));
        median_p.push(median);
        expected_purchases.push(segment.expected_purchases);
        expected_revenue.push(segment.expected_revenue);
        total.push(segment.clv);
        mean_clv.push(mean(segment.clv));
        share.push((total_clv > 0.0).then(|| segment.clv / total_clv));
        report.push(ValueSegmentReport {
            segment_id: *id as i32,
            name: name.clone(),
            customers: count as u64,
            mean_p_alive: mean(p_sum).unwrap_or(0.0),
            expected_purchases: segment.expected_purchases,
            total_clv: priced.then_some(segment.clv),
            mean_clv: if priced { mean(segment.clv) } else { None },
            value_share: if priced {
                (total_clv > 0.0).then(|| segment.clv / total_clv)
            } else {
                None
            },
        });
    }
    let mut fields = vec![
        Field::new("segment_id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("customers", DataType::Int64, false),
        Field::new("mean_p_alive", DataType::Float64, true),
        Field::new("median_p_alive", DataType::Float64, true),
        Field::new("expected_purchases", DataType::Float64, false),
    ];
    let mut columns: Vec<Arc<dyn Array>> = vec![
        Arc::new(Int32Array::from(ids.clone())),
        Arc::new(StringArray::from_iter_values(&labels)),
        Arc::new(Int64Array::from(customers.clone())),
        Arc::new(Float64Array::from(mean_p)),
        Arc::new(Float64Array::from(median_p)),
        Arc::new(Float64Array::from(expected_purchases)),
    ];
    if priced {
        for (name, nullable, array) in [
            (
                "expected_revenue",
                false,
                Float64Array::from(expected_revenue),
            ),
            ("total_clv", false, Float64Array::from(total)),
            ("mean_clv", true, Float64Array::from(mean_clv)),
            ("value_share", true, Float64Array::from(share)),
        ] {
            fields.push(Field::new(name, DataType::Float64, nullable));
            columns.push(Arc::new(array));
        }
    }
    let by_segment =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(failed)?;
    let ltv = ltv_batch(names, &sums, &customers, months, discount_rate, priced)?;
    Ok(BySegment {
        by_segment,
        ltv,
        report,
    })
}

/// `ltv.parquet`: per segment and month of the horizon, the expected active customers,
/// retention from the month before (month 0: now), purchases and, with a spend model,
/// revenue, the month's discount factor, discounted revenue, the cumulative discounted
/// value and that per customer of the segment today. A month's cash flow is booked at its
/// end, as the CLV discounts it.
fn ltv_batch(
    names: &[(u32, String)],
    sums: &[SegmentSums],
    customers: &[i64],
    months: u32,
    discount_rate: f64,
    priced: bool,
) -> Result<RecordBatch> {
    let mut ids = Vec::new();
    let mut labels = Vec::new();
    let mut month_numbers = Vec::new();
    let mut active = Vec::new();
    let mut retention = Vec::new();
    let mut purchases = Vec::new();
    let mut revenue = Vec::new();
    let mut factors = Vec::new();
    let mut discounted = Vec::new();
    let mut cumulative = Vec::new();
    let mut per_customer = Vec::new();
    for (((id, name), segment), count) in names.iter().zip(sums).zip(customers) {
        let mut before = segment.active_now;
        let mut value = 0.0;
        for month in 1..=months {
            let m = (month - 1) as usize;
            let factor = clv::discount_factor(discount_rate, month);
            ids.push(*id as i32);
            labels.push(name.clone());
            month_numbers.push(month as i32);
            active.push(segment.active[m]);
            retention.push((before > 0.0).then(|| segment.active[m] / before));
            before = segment.active[m];
            purchases.push(segment.purchases[m]);
            revenue.push(segment.revenue[m]);
            factors.push(factor);
            discounted.push(segment.revenue[m] * factor);
            value += segment.revenue[m] * factor;
            cumulative.push(value);
            per_customer.push((*count > 0).then(|| value / *count as f64));
        }
    }
    let mut fields = vec![
        Field::new("segment_id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("month", DataType::Int32, false),
        Field::new("expected_active", DataType::Float64, false),
        Field::new("retention", DataType::Float64, true),
        Field::new("expected_purchases", DataType::Float64, false),
    ];
    let mut columns: Vec<Arc<dyn Array>> = vec![
        Arc::new(Int32Array::from(ids)),
        Arc::new(StringArray::from_iter_values(&labels)),
        Arc::new(Int32Array::from(month_numbers)),
        Arc::new(Float64Array::from(active)),
        Arc::new(Float64Array::from(retention)),
        Arc::new(Float64Array::from(purchases)),
    ];
    if priced {
        for (name, nullable, array) in [
            ("revenue", false, Float64Array::from(revenue)),
            ("discount_factor", false, Float64Array::from(factors)),
            ("discounted_revenue", false, Float64Array::from(discounted)),
            ("cumulative_value", false, Float64Array::from(cumulative)),
            ("value_per_customer", true, Float64Array::from(per_customer)),
        ] {
            fields.push(Field::new(name, DataType::Float64, nullable));
            columns.push(Arc::new(array));
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(failed)
}

/// The median, found by selection rather than a sort (`values` is reordered); `None` of none.
fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (below, middle, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    let middle = *middle;
    if n % 2 == 1 {
        return Some(middle);
    }
    // The largest of the lower half is the other middle value.
    let lower = below.iter().copied().max_by(f64::total_cmp)?;
    Some((lower + middle) / 2.0)
}

#[cfg(test)]
mod median_tests {
    use super::median;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_two() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [0.3]), Some(0.3));
        assert_eq!(median(&mut [0.9, 0.1, 0.5]), Some(0.5));
        assert_eq!(median(&mut [0.9, 0.1, 0.4, 0.6]), Some(0.5));
        assert_eq!(median(&mut [1.0, 1.0, 0.0, 1.0]), Some(1.0));
    }
}
