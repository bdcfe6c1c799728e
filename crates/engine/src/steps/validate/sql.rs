//! Row-level checks compiled to SQL: one query over the input that adds, per check, a
//! failure flag and a readable reason (see [`crate::sql::fail_column`]), so the input is
//! read once and every row's verdicts are known together. One generator per check kind.

use segflow_pipeline::{Check, CheckKind, Validate};

use crate::sql::{fail_column, literal, quote, reason_column};

/// The query flagging every row: the input's columns, then per row-level check a failure
/// flag and a reason. Also used by `check` to plan the checks against schemas.
pub fn flagging_sql(validate: &Validate, input_columns: &[String]) -> String {
    let input = quote(&validate.input);
    let mut select: Vec<String> = input_columns
        .iter()
        .map(|column| format!("i.{}", quote(column)))
        .collect();
    let mut joins = String::new();
    for (index, check) in validate.checks.iter().enumerate() {
        let Some((fail, reason)) = row_condition(check, index, &mut joins) else {
            continue;
        };
        select.push(format!("coalesce({fail}, false) AS {}", fail_column(index)));
        select.push(format!(
            "CASE WHEN coalesce({fail}, false) THEN {reason} END AS {}",
            reason_column(index)
        ));
    }
    format!("SELECT {} FROM {input} i{joins}", select.join(", "))
}

/// (fail condition, reason expression) for a row-level check; None for table-level ones.
fn row_condition(check: &Check, index: usize, joins: &mut String) -> Option<(String, String)> {
    let value = |column: &str| format!("CAST(i.{} AS VARCHAR)", quote(column));
    let condition = match &check.kind {
        CheckKind::NotNull { column } => (
            format!("i.{} IS NULL", quote(column)),
            literal(&format!("{column} is null")),
        ),
        CheckKind::Unique { columns } => {
            let partition: Vec<String> =
                columns.iter().map(|c| format!("i.{}", quote(c))).collect();
            let values: Vec<String> = columns
                .iter()
                .map(|c| format!("coalesce({}, 'null')", value(c)))
                .collect();
            (
                format!("count(*) OVER (PARTITION BY {}) > 1", partition.join(", ")),
                format!(
                    "concat({}, ' (', {}, ') appears more than once')",
                    literal(&columns.join(", ")),
                    values.join(", ', ', ")
                ),
            )
        }
        CheckKind::AcceptedValues { column, values } => {
            let list: Vec<String> = values.iter().map(|v| v.to_sql()).collect();
            let shown: Vec<String> = values.iter().map(|v| v.display()).collect();
            (
                format!(
                    "i.{} IS NOT NULL AND i.{} NOT IN ({})",
                    quote(column),
                    quote(column),
                    list.join(", ")
                ),
                format!(
                    "concat({}, {}, {})",
                    literal(&format!("{column} ")),
                    value(column),
                    literal(&format!(" is not one of {}", shown.join(", ")))
                ),
            )
        }
        CheckKind::Range {
            column,
            min,
            max,
            min_inclusive,
            max_inclusive,
        } => {
            let col = format!("i.{}", quote(column));
            let below = min.as_ref().map(|min| {
                let op = if *min_inclusive { "<" } else { "<=" };
                let bound = if *min_inclusive {
                    "below the minimum"
                } else {
                    "not above"
                };
                (
                    format!("{col} {op} {}", min.to_sql()),
                    literal(&format!(" is {bound} {}", min.display())),
                )
            });
            let above = max.as_ref().map(|max| {
                let op = if *max_inclusive { ">" } else { ">=" };
                let bound = if *max_inclusive {
                    "above the maximum"
                } else {
                    "not below"
                };
                (
                    format!("{col} {op} {}", max.to_sql()),
                    literal(&format!(" is {bound} {}", max.display())),
                )
            });
            let prefix = format!(
                "concat({}, {}",
                literal(&format!("{column} ")),
                value(column)
            );
            match (below, above) {
                (Some((low, why_low)), Some((high, why_high))) => (
                    format!("({low} OR {high})"),
                    format!("{prefix}, CASE WHEN {low} THEN {why_low} ELSE {why_high} END)"),
                ),
                (Some((low, why)), None) => (low, format!("{prefix}, {why})")),
                (None, Some((high, why))) => (high, format!("{prefix}, {why})")),
                (None, None) => return None,
            }
        }
        CheckKind::Pattern { column, regex } => (
            format!(
                "i.{} IS NOT NULL AND i.{} !~ {}",
                quote(column),
                quote(column),
                literal(regex)
            ),
            format!(
                "concat({}, {}, {})",
                literal(&format!("{column} ")),
                value(column),
                literal(&format!(" does not match {regex}"))
            ),
        ),
        CheckKind::Relationships { column, to, field } => {
            let alias = format!("__segflow_ref_{index}");
            joins.push_str(&format!(
                " LEFT JOIN (SELECT DISTINCT {} AS v FROM {}) {alias} ON i.{} = {alias}.v",
                quote(field),
                quote(to),
                quote(column)
            ));
            (
                format!("i.{} IS NOT NULL AND {alias}.v IS NULL", quote(column)),
                format!(
                    "concat({}, {}, {})",
                    literal(&format!("{column} ")),
                    value(column),
                    literal(&format!(" is not in {to}.{field}"))
                ),
            )
        }
        _ => return None,
    };
    Some(condition)
}
