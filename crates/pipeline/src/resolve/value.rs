//! The value stage: input and key (defaulting to the segment stage's), the history's
//! columns, the models, the horizon, the discount rate and the evaluation period.

use std::collections::HashSet;

use super::{Resolver, any_of};
use crate::raw::{RawSegment, RawValue};
use crate::value::{parse_months, parse_period_days};
use crate::{Evaluate, PurchaseModelKind, SpendModelKind, TimeUnit, Value, ValueColumns};

impl Resolver {
    /// `None` when a problem was reported.
    pub(super) fn resolve_value(
        &mut self,
        raw: RawValue,
        segment: Option<&RawSegment>,
    ) -> Option<Value> {
        let problems_before = self.problems.len();
        let time_unit = match raw.time_unit.as_deref() {
            None => TimeUnit::Week,
            Some(word) => TimeUnit::parse(word).unwrap_or_else(|| {
                self.problem(
                    "value.time_unit",
                    format!(
                        "unknown time unit `{word}`; expected {}",
                        any_of(TimeUnit::WORDS)
                    ),
                );
                TimeUnit::Week
            }),
        };
        let purchase_model = match raw.purchase_model.as_deref() {
            None => PurchaseModelKind::BgNbd,
            Some(word) => PurchaseModelKind::parse(word).unwrap_or_else(|| {
                self.problem(
                    "value.purchase_model",
                    format!(
                        "unknown purchase model `{word}`; expected {}",
                        any_of(PurchaseModelKind::WORDS)
                    ),
                );
                PurchaseModelKind::BgNbd
            }),
        };
        let spend_model = match raw.spend_model.as_deref() {
            None | Some("gamma_gamma") => Some(SpendModelKind::GammaGamma),
            Some("none") => None,
            Some(word) => {
                self.problem(
                    "value.spend_model",
                    format!(
                        "unknown spend model `{word}`; expected {}",
                        any_of(SpendModelKind::WORDS)
                    ),
                );
                None
            }
        };
        let named = raw.columns.unwrap_or_default();
        let columns = ValueColumns {
            frequency: named.frequency.unwrap_or_else(|| "frequency".to_string()),
            recency: named.recency.unwrap_or_else(|| "recency".to_string()),
            age: named.age.unwrap_or_else(|| "T".to_string()),
            monetary_value: match (spend_model, named.monetary_value) {
                (_, Some(column)) => Some(column),
                (Some(_), None) => Some("monetary_value".to_string()),
                (None, None) => None,
            },
        };
        // Without a segment stage there is nothing to take the input and key from.
        let mut required = |at: &str, given: Option<String>, of_segment: Option<&String>| {
            given.or_else(|| of_segment.cloned()).or_else(|| {
                self.problem(
                    at,
                    format!(
                        "without a segment stage, name the {}",
                        if at == "value.key" {
                            "column that identifies a customer"
                        } else {
                            "table with one row per customer"
                        }
                    ),
                );
                None
            })
        };
        let input = required("value.input", raw.input, segment.map(|s| &s.input));
        let key = required("value.key", raw.key, segment.map(|s| &s.key)).unwrap_or_default();
        let mut seen = HashSet::new();
        for (role, column) in columns.named() {
            let at = format!("value.columns.{role}");
            if column == key {
                self.problem(at, format!("`{column}` is the key column"));
            } else if !seen.insert(column.to_string()) {
                self.problem(
                    at,
                    format!("`{column}` is named for two quantities of the history"),
                );
            }
        }
        let horizon_months = match raw.horizon.as_deref() {
            None => 12,
            Some(text) => parse_months(text).unwrap_or_else(|| {
                self.problem(
                    "value.horizon",
                    format!(
                        "`{text}` is not a number of months: the horizon is counted in months, as the CLV is discounted month by month; write e.g. `12 months` or `2 years`"
                    ),
                );
                12
            }),
        };
        let discount_rate = raw.discount_rate.unwrap_or(0.01);
        if !(0.0..1.0).contains(&discount_rate) {
            self.problem(
                "value.discount_rate",
                format!(
                    "a monthly discount rate is at least 0 and below 1 (0.01 is 1% a month), got {discount_rate}"
                ),
            );
        }
        let penalizer = raw.penalizer.unwrap_or(0.0);
        if !(penalizer >= 0.0 && penalizer.is_finite()) {
            self.problem(
                "value.penalizer",
                format!("the penalizer is a number of at least 0, got {penalizer}"),
            );
        }
        let quarantine_invalid = match raw.on_invalid.as_deref() {
            None | Some("fail") => false,
            Some("quarantine") => true,
            Some(other) => {
                self.problem(
                    "value.on_invalid",
                    format!("expected `fail` or `quarantine`, got `{other}`"),
                );
                false
            }
        };
        let evaluate = raw.evaluate.and_then(|evaluate| {
            let period_days = parse_period_days(&evaluate.period).or_else(|| {
                self.problem(
                    "value.evaluate.period",
                    format!(
                        "`{}` is not a period: write a number and a unit, e.g. `26 weeks`, `6 months` or `90 days`",
                        evaluate.period
                    ),
                );
                None
            })?;
            if seen.contains(&evaluate.actual_purchases) || evaluate.actual_purchases == key {
                self.problem(
                    "value.evaluate.actual_purchases",
                    format!(
                        "`{}` is already a column of the history or the key",
                        evaluate.actual_purchases
                    ),
                );
            }
            Some(Evaluate {
                actual_purchases: evaluate.actual_purchases,
                period_days,
            })
        });
        if self.problems.len() > problems_before {
            return None;
        }
        Some(Value {
            input: input?,
            key,
            columns,
            time_unit,
            purchase_model,
            spend_model,
            horizon_months,
            discount_rate,
            penalizer,
            quarantine_invalid,
            evaluate,
        })
    }
}
