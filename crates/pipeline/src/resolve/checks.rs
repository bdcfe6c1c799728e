//! Validate steps' checks: each raw check resolved into a [`CheckKind`], with every
//! problem reported at its key.

use std::collections::HashSet;

use super::{Resolver, check_identifier};
use crate::checks::{Change, Check, CheckKind, Metric, Severity, literal};
use crate::raw::{RawCheck, RawLiteral};
use crate::threshold::Threshold;

pub(crate) const CHECK_TYPES: &[&str] = &[
    "not_null",
    "unique",
    "accepted_values",
    "range",
    "pattern",
    "relationships",
    "row_count",
    "freshness",
    "schema",
    "sql",
    "change",
];

impl Resolver {
    pub(crate) fn resolve_checks(&mut self, step_key: &str, raw: Vec<RawCheck>) -> Vec<Check> {
        let mut checks: Vec<Check> = Vec::new();
        let mut names = HashSet::new();
        for (index, raw) in raw.into_iter().enumerate() {
            let key = format!("{step_key}.checks[{index}]");
            let Some(check) = self.resolve_check(&key, raw) else {
                continue;
            };
            check_identifier(
                &mut self.problems,
                &format!("{key}.name"),
                "check name",
                &check.name,
            );
            if !names.insert(check.name.clone()) {
                self.problem(
                    format!("{key}.name"),
                    format!(
                        "two checks of this step are named `{}`; give one a `name`",
                        check.name
                    ),
                );
            }
            checks.push(check);
        }
        checks
    }

    fn resolve_check(&mut self, key: &str, raw: RawCheck) -> Option<Check> {
        let check_type = raw.check_type.as_str();
        if !CHECK_TYPES.contains(&check_type) {
            self.problem(
                format!("{key}.type"),
                format!(
                    "unknown check type `{check_type}`{}; types: {}",
                    crate::did_you_mean(check_type, CHECK_TYPES),
                    CHECK_TYPES.join(", ")
                ),
            );
            return None;
        }
        self.reject_inapplicable(key, &raw);
        let word = raw.severity.as_deref().unwrap_or("error");
        let Some(severity) = Severity::parse(word) else {
            self.problem(
                format!("{key}.severity"),
                format!("unknown severity `{word}`: use error, warn or quarantine"),
            );
            return None;
        };
        let kind = self.check_kind(key, &raw)?;
        if severity == Severity::Quarantine && !kind.is_row_level() {
            self.problem(
                format!("{key}.severity"),
                format!(
                    "a `{check_type}` check does not single out rows, so it cannot quarantine; use error or warn"
                ),
            );
            return None;
        }
        let (warn_if, error_if) = self.thresholds(key, &raw, severity, &kind)?;
        let default_name = match (&raw.column, raw.columns.is_empty(), &kind) {
            (column, _, CheckKind::Change { metric, .. }) => match column {
                Some(column) => format!("change_{}_{column}", metric.as_str()),
                None => format!("change_{}", metric.as_str()),
            },
            (Some(column), _, _) => format!("{check_type}_{column}"),
            (None, false, _) => format!("{check_type}_{}", raw.columns.join("_")),
            (None, true, _) => check_type.to_string(),
        };
        Some(Check {
            name: raw.name.unwrap_or(default_name).to_ascii_lowercase(),
            severity,
            warn_if,
            error_if,
            kind,
            key: key.to_string(),
        })
    }

    /// `warn_if` and `error_if` with the severity's defaults: an error check fails on any
    /// failing row and a warn check warns on any; a quarantine check sets its rows aside
    /// and neither warns nor fails unless told to.
    #[allow(clippy::type_complexity)]
    fn thresholds(
        &mut self,
        key: &str,
        raw: &RawCheck,
        severity: Severity,
        kind: &CheckKind,
    ) -> Option<(Option<Threshold>, Option<Threshold>)> {
        let mut parsed = |name: &str, text: &Option<String>| match text {
            None => Some(None),
            Some(text) => match Threshold::parse(text) {
                Ok(threshold) => Some(Some(threshold)),
                Err(message) => {
                    self.problem(format!("{key}.{name}"), message);
                    None
                }
            },
        };
        let warn_if = parsed("warn_if", &raw.warn_if)?;
        let error_if = parsed("error_if", &raw.error_if)?;
        if !kind.is_row_level() {
            for (name, given) in [
                ("warn_if", warn_if.is_some()),
                ("error_if", error_if.is_some()),
            ] {
                if given {
                    self.problem(
                        format!("{key}.{name}"),
                        format!(
                            "`{name}` counts failing rows, which only row-level checks (not_null, unique, accepted_values, range, pattern, relationships) have; a `{}` check passes or not, and its severity says what then",
                            kind.type_name()
                        ),
                    );
                }
            }
            return (warn_if.is_none() && error_if.is_none()).then_some((None, None));
        }
        match severity {
            Severity::Error => Some((
                Some(warn_if.unwrap_or(Threshold::ANY)),
                Some(error_if.unwrap_or(Threshold::ANY)),
            )),
            Severity::Warn if error_if.is_some() => {
                self.problem(
                    format!("{key}.error_if"),
                    "a check of severity `warn` never fails the run; use severity error (or quarantine) with `error_if`",
                );
                None
            }
            Severity::Warn => Some((Some(warn_if.unwrap_or(Threshold::ANY)), None)),
            Severity::Quarantine => Some((warn_if, error_if)),
        }
    }

    /// Keys given that the check's type does not use are mistakes, not silently ignored.
    fn reject_inapplicable(&mut self, key: &str, raw: &RawCheck) {
        let used: &[&str] = match raw.check_type.as_str() {
            "not_null" => &["column"],
            "unique" => &["column", "columns"],
            "accepted_values" => &["column", "values"],
            "range" => &["column", "min", "max", "min_inclusive", "max_inclusive"],
            "pattern" => &["column", "regex"],
            "relationships" => &["column", "to", "field"],
            "row_count" => &["min", "max"],
            "freshness" => &["column", "max_age", "as_of"],
            "schema" => &["expect"],
            "change" => &["column", "metric", "max_increase", "max_decrease"],
            _ => &["sql"],
        };
        let given = [
            ("column", raw.column.is_some()),
            ("columns", !raw.columns.is_empty()),
            ("values", !raw.values.is_empty()),
            ("min", raw.min.is_some()),
            ("max", raw.max.is_some()),
            ("min_inclusive", raw.min_inclusive.is_some()),
            ("max_inclusive", raw.max_inclusive.is_some()),
            ("regex", raw.regex.is_some()),
            ("to", raw.to.is_some()),
            ("field", raw.field.is_some()),
            ("max_age", raw.max_age.is_some()),
            ("as_of", raw.as_of.is_some()),
            ("expect", !raw.expect.is_empty()),
            ("sql", raw.sql.is_some()),
            ("metric", raw.metric.is_some()),
            ("max_increase", raw.max_increase.is_some()),
            ("max_decrease", raw.max_decrease.is_some()),
        ];
        for (name, present) in given {
            if present && !used.contains(&name) {
                self.problem(
                    format!("{key}.{name}"),
                    format!(
                        "`{name}` does not apply to a `{}` check; it takes {}",
                        raw.check_type,
                        used.join(", ")
                    ),
                );
            }
        }
    }

    fn required<T: Clone>(&mut self, key: &str, name: &str, value: &Option<T>) -> Option<T> {
        if value.is_none() {
            self.problem(key, format!("this check needs `{name}`"));
        }
        value.clone()
    }

    fn check_kind(&mut self, key: &str, raw: &RawCheck) -> Option<CheckKind> {
        let kind = match raw.check_type.as_str() {
            "not_null" => CheckKind::NotNull {
                column: self.required(key, "column", &raw.column)?,
            },
            "unique" => {
                let mut columns = raw.columns.clone();
                columns.extend(raw.column.clone());
                if columns.is_empty() {
                    self.problem(key, "this check needs `column` or `columns`");
                    return None;
                }
                CheckKind::Unique { columns }
            }
            "accepted_values" => {
                if raw.values.is_empty() {
                    self.problem(key, "this check needs `values`, a non-empty list");
                    return None;
                }
                CheckKind::AcceptedValues {
                    column: self.required(key, "column", &raw.column)?,
                    values: raw.values.iter().map(literal).collect(),
                }
            }
            "range" => {
                if raw.min.is_none() && raw.max.is_none() {
                    self.problem(key, "this check needs `min`, `max` or both");
                    return None;
                }
                CheckKind::Range {
                    column: self.required(key, "column", &raw.column)?,
                    min: raw.min.as_ref().map(literal),
                    max: raw.max.as_ref().map(literal),
                    min_inclusive: raw.min_inclusive.unwrap_or(true),
                    max_inclusive: raw.max_inclusive.unwrap_or(true),
                }
            }
            "pattern" => {
                let regex = self.required(key, "regex", &raw.regex)?;
                CheckKind::Pattern {
                    column: self.required(key, "column", &raw.column)?,
                    regex: self.expand(&format!("{key}.regex"), &regex)?,
                }
            }
            "relationships" => CheckKind::Relationships {
                column: self.required(key, "column", &raw.column)?,
                to: self.required(key, "to", &raw.to)?,
                field: self.required(key, "field", &raw.field)?,
            },
            "row_count" => {
                let count =
                    |resolver: &mut Resolver, name: &str, value: &Option<RawLiteral>| match value {
                        None => Some(None),
                        Some(RawLiteral::Integer(n)) if *n >= 0 => Some(Some(*n as u64)),
                        Some(_) => {
                            resolver.problem(
                                format!("{key}.{name}"),
                                "a row count is a whole number >= 0",
                            );
                            None
                        }
                    };
                let min = count(self, "min", &raw.min)?;
                let max = count(self, "max", &raw.max)?;
                if min.is_none() && max.is_none() {
                    self.problem(key, "this check needs `min`, `max` or both");
                    return None;
                }
                CheckKind::RowCount { min, max }
            }
            "freshness" => {
                let max_age = self.required(key, "max_age", &raw.max_age)?;
                let Some(max_age_seconds) = parse_duration(&max_age) else {
                    self.problem(
                        format!("{key}.max_age"),
                        format!(
                            "`{max_age}` is not a duration: numbers with units s, m, h, d or w (e.g. `30d` or `1d12h`)"
                        ),
                    );
                    return None;
                };
                let as_of = match (&raw.as_of, self.vars.get("as_of")) {
                    (Some(as_of), _) => self.expand(&format!("{key}.as_of"), as_of)?,
                    (None, Some(default)) => default.clone(),
                    (None, None) => {
                        self.problem(
                            key,
                            "this check needs `as_of` (or a variable `as_of`) to measure age from",
                        );
                        return None;
                    }
                };
                CheckKind::Freshness {
                    column: self.required(key, "column", &raw.column)?,
                    max_age,
                    max_age_seconds,
                    as_of,
                }
            }
            "schema" => {
                if raw.expect.is_empty() {
                    self.problem(key, "this check needs `expect`, a list of columns");
                    return None;
                }
                CheckKind::Schema {
                    expect: self.schema(&format!("{key}.expect"), raw.expect.clone()),
                }
            }
            "change" => self.change_check(key, raw)?,
            _ => {
                let sql = self.required(key, "sql", &raw.sql)?;
                CheckKind::Sql {
                    sql: self.expand(&format!("{key}.sql"), &sql)?,
                }
            }
        };
        Some(kind)
    }
}

impl Resolver {
    fn change_check(&mut self, key: &str, raw: &RawCheck) -> Option<CheckKind> {
        let word = self.required(key, "metric", &raw.metric)?;
        let Some(metric) = Metric::parse(&word) else {
            self.problem(
                format!("{key}.metric"),
                format!(
                    "unknown metric `{word}`{}; metrics: {}",
                    crate::did_you_mean(&word, &Metric::WORDS),
                    Metric::WORDS.join(", ")
                ),
            );
            return None;
        };
        let column = match (metric, &raw.column) {
            (Metric::RowCount, Some(_)) => {
                self.problem(
                    format!("{key}.column"),
                    "`row_count` counts the table's rows; it takes no `column`",
                );
                return None;
            }
            (Metric::RowCount, None) => None,
            (_, None) => {
                self.problem(
                    key,
                    format!("metric `{word}` needs `column`, the column it measures"),
                );
                return None;
            }
            (_, Some(column)) => Some(column.clone()),
        };
        let mut bound = |name: &str, value: &Option<RawLiteral>| {
            let number = |value: f64| (value.is_finite() && value >= 0.0).then_some(value);
            let parsed = match value {
                None => return Some(None),
                Some(RawLiteral::Integer(n)) => number(*n as f64).map(Change::Absolute),
                Some(RawLiteral::Float(x)) => number(*x).map(Change::Absolute),
                Some(RawLiteral::Text(text)) => text
                    .trim()
                    .strip_suffix('%')
                    .and_then(|percent| percent.trim().parse::<f64>().ok())
                    .and_then(number)
                    .map(|percent| Change::Relative(percent / 100.0)),
                Some(RawLiteral::Boolean(_)) => None,
            };
            if parsed.is_none() {
                self.problem(
                    format!("{key}.{name}"),
                    "a change is a share of the previous value (`\"30%\"`) or an amount in the metric's units (`5000`), not negative",
                );
                return None;
            }
            Some(parsed)
        };
        let max_increase = bound("max_increase", &raw.max_increase)?;
        let max_decrease = bound("max_decrease", &raw.max_decrease)?;
        if max_increase.is_none() && max_decrease.is_none() {
            self.problem(
                key,
                "this check needs `max_increase`, `max_decrease` or both",
            );
            return None;
        }
        Some(CheckKind::Change {
            metric,
            column,
            max_increase,
            max_decrease,
        })
    }
}

/// `90s`, `15m`, `12h`, `30d`, `2w`, `1d12h` -> seconds, as humantime reads durations
/// everywhere else in segflow (`gc --older-than`, store timeouts).
fn parse_duration(text: &str) -> Option<u64> {
    humantime::parse_duration(text.trim())
        .ok()
        .map(|duration| duration.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Some(30 * 86_400));
        assert_eq!(parse_duration("12h"), Some(43_200));
        assert_eq!(parse_duration("2w"), Some(1_209_600));
        assert_eq!(parse_duration("1d12h"), Some(129_600));
        assert_eq!(parse_duration("30"), None);
        assert_eq!(parse_duration("d"), None);
    }
}
