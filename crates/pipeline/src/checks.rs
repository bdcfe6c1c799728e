//! Validate steps: the declarative checks they hold, as the engine reads them (their
//! resolution from the file is `resolve::checks`).

use crate::raw::RawLiteral;
use crate::threshold::Threshold;
use crate::{Column, ColumnType};

/// A `kind: validate` step: `input` minus the rows its quarantine checks reject.
#[derive(Debug, Clone)]
pub struct Validate {
    pub input: String,
    /// Columns shown for sample failing rows.
    pub sample_key: Vec<String>,
    pub checks: Vec<Check>,
}

impl Validate {
    /// Tables the checks read besides the input.
    pub fn referenced_tables(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter_map(|check| match &check.kind {
                CheckKind::Relationships { to, .. } => Some(to.as_str()),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub severity: Severity,
    /// Row-level checks: the failing rows that make the check warn, and those that fail
    /// the run, defaults filled in from the severity (`None`: never). Table-level checks
    /// have neither; their severity decides.
    pub warn_if: Option<Threshold>,
    pub error_if: Option<Threshold>,
    pub kind: CheckKind,
    /// Where it is declared, e.g. `steps[1].checks[2]`.
    pub key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The run fails with the "validation failed" exit code and publishes nothing.
    Error,
    /// Reported; the run goes on.
    Warn,
    /// Failing rows leave the step's output for the rejects table; the run goes on.
    Quarantine,
}

impl Severity {
    pub(crate) const WORDS: [&'static str; 3] = [
        Severity::Error.as_str(),
        Severity::Warn.as_str(),
        Severity::Quarantine.as_str(),
    ];

    pub(crate) fn parse(text: &str) -> Option<Severity> {
        [Severity::Error, Severity::Warn, Severity::Quarantine]
            .into_iter()
            .find(|severity| severity.as_str() == text)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warn => "warn",
            Severity::Quarantine => "quarantine",
        }
    }
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    NotNull {
        column: String,
    },
    Unique {
        columns: Vec<String>,
    },
    AcceptedValues {
        column: String,
        values: Vec<Literal>,
    },
    Range {
        column: String,
        min: Option<Literal>,
        max: Option<Literal>,
        min_inclusive: bool,
        max_inclusive: bool,
    },
    Pattern {
        column: String,
        regex: String,
    },
    Relationships {
        column: String,
        to: String,
        field: String,
    },
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
    },
    Freshness {
        column: String,
        /// As written, e.g. `30d`.
        max_age: String,
        max_age_seconds: u64,
        as_of: String,
    },
    Schema {
        expect: Vec<Column>,
    },
    /// A query whose rows are the violations.
    Sql {
        sql: String,
    },
    /// A metric of the input against its value in the previous published run.
    Change {
        metric: Metric,
        /// For every metric but `row_count`.
        column: Option<String>,
        max_increase: Option<Change>,
        max_decrease: Option<Change>,
    },
}

/// What a `change` check measures of its table. Recorded in the run's manifest under
/// [`Metric::id`], so the next run compares without reading this run's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    RowCount,
    /// Nulls over rows, 0 to 1.
    NullShare,
    Distinct,
    Sum,
    Mean,
    Min,
    Max,
}

impl Metric {
    pub(crate) const WORDS: [&'static str; 7] = [
        "row_count",
        "null_share",
        "distinct",
        "sum",
        "mean",
        "min",
        "max",
    ];
    const ALL: [Metric; 7] = [
        Metric::RowCount,
        Metric::NullShare,
        Metric::Distinct,
        Metric::Sum,
        Metric::Mean,
        Metric::Min,
        Metric::Max,
    ];

    pub(crate) fn parse(text: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|metric| metric.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        Self::WORDS[Self::ALL.iter().position(|m| *m == self).expect("listed")]
    }

    /// Whether the metric needs a numeric column (the others read any column, or none).
    pub fn needs_number(self) -> bool {
        matches!(self, Metric::Sum | Metric::Mean | Metric::Min | Metric::Max)
    }

    /// `row_count`, `null_share(customer_id)`: the metric's name in manifests and reports.
    pub fn id(self, column: Option<&str>) -> String {
        match column {
            Some(column) => format!("{}({column})", self.as_str()),
            None => self.as_str().to_string(),
        }
    }
}

/// How far a metric may move in one direction between runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// A share of the previous value (`"30%"` is 0.3).
    Relative(f64),
    /// An amount in the metric's units.
    Absolute(f64),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Relative(share) => write!(f, "{}%", 100.0 * share),
            Change::Absolute(amount) => write!(f, "{amount}"),
        }
    }
}

impl CheckKind {
    /// The input's columns the check reads (a schema check's are expectations, not reads).
    pub fn input_columns(&self) -> Vec<&str> {
        match self {
            CheckKind::NotNull { column }
            | CheckKind::AcceptedValues { column, .. }
            | CheckKind::Range { column, .. }
            | CheckKind::Pattern { column, .. }
            | CheckKind::Relationships { column, .. }
            | CheckKind::Freshness { column, .. } => vec![column.as_str()],
            CheckKind::Unique { columns } => columns.iter().map(String::as_str).collect(),
            CheckKind::Change { column, .. } => column.iter().map(String::as_str).collect(),
            CheckKind::RowCount { .. } | CheckKind::Schema { .. } | CheckKind::Sql { .. } => {
                Vec::new()
            }
        }
    }

    /// Row-level checks find failing rows of the input, so they can quarantine them.
    pub fn is_row_level(&self) -> bool {
        matches!(
            self,
            CheckKind::NotNull { .. }
                | CheckKind::Unique { .. }
                | CheckKind::AcceptedValues { .. }
                | CheckKind::Range { .. }
                | CheckKind::Pattern { .. }
                | CheckKind::Relationships { .. }
        )
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            CheckKind::NotNull { .. } => "not_null",
            CheckKind::Unique { .. } => "unique",
            CheckKind::AcceptedValues { .. } => "accepted_values",
            CheckKind::Range { .. } => "range",
            CheckKind::Pattern { .. } => "pattern",
            CheckKind::Relationships { .. } => "relationships",
            CheckKind::RowCount { .. } => "row_count",
            CheckKind::Freshness { .. } => "freshness",
            CheckKind::Schema { .. } => "schema",
            CheckKind::Sql { .. } => "sql",
            CheckKind::Change { .. } => "change",
        }
    }
}

/// A value from the file used in generated SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Text(String),
}

impl Literal {
    /// As SQL: numbers and booleans bare, text quoted (so '2011-01-01' compares with dates).
    pub fn to_sql(&self) -> String {
        match self {
            Literal::Integer(value) => value.to_string(),
            Literal::Float(value) => format!("{value:?}"),
            Literal::Boolean(value) => value.to_string(),
            Literal::Text(value) => format!("'{}'", value.replace('\'', "''")),
        }
    }

    /// As people read it in a reason.
    pub fn display(&self) -> String {
        match self {
            Literal::Text(value) => value.clone(),
            other => other.to_sql(),
        }
    }
}

pub(crate) fn literal(raw: &RawLiteral) -> Literal {
    match raw {
        RawLiteral::Integer(value) => Literal::Integer(*value),
        RawLiteral::Float(value) => Literal::Float(*value),
        RawLiteral::Boolean(value) => Literal::Boolean(*value),
        RawLiteral::Text(value) => Literal::Text(value.clone()),
    }
}

/// Column types by name, for `schema` checks.
pub fn column_type_name(column_type: ColumnType) -> &'static str {
    match column_type {
        ColumnType::String => "string",
        ColumnType::Int32 => "int32",
        ColumnType::Int64 => "int64",
        ColumnType::Float64 => "float64",
        ColumnType::Boolean => "boolean",
        ColumnType::Date => "date",
        ColumnType::Timestamp => "timestamp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_quote_text_only() {
        assert_eq!(Literal::Text("O'Brien".into()).to_sql(), "'O''Brien'");
        assert_eq!(Literal::Integer(3).to_sql(), "3");
        assert_eq!(Literal::Float(0.5).to_sql(), "0.5");
    }
}
