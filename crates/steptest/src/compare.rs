//! Expected rows against the rows a step produced, and a diff a person can read.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Float32Type, Float64Type, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use segflow_pipeline::{Expected, Literal};

/// A cell as compared: floats by value (within the tolerance), everything else by its text.
#[derive(Debug, Clone)]
enum Cell {
    /// A column the expected row does not name: anything matches.
    Any,
    Null,
    Float(f64),
    Text(String),
}

impl Cell {
    fn matches(&self, expected: &Cell, tolerance: f64) -> bool {
        match (self, expected) {
            (_, Cell::Any) | (Cell::Any, _) => true,
            (Cell::Null, Cell::Null) => true,
            (Cell::Float(a), Cell::Float(b)) if a.is_nan() && b.is_nan() => true,
            (Cell::Float(a), Cell::Float(b)) => (a - b).abs() <= tolerance * b.abs().max(1.0),
            (Cell::Text(a), Cell::Text(b)) => a == b,
            _ => false,
        }
    }

    fn show(&self) -> String {
        match self {
            Cell::Any => "any".to_string(),
            Cell::Null => "null".to_string(),
            Cell::Float(value) => format!("{value:?}"),
            // Quoted when it could be misread inside `{a: 1, b: 2}`.
            Cell::Text(value)
                if value.is_empty()
                    || value.trim() != value
                    || value.contains([',', ':', '{', '}', '"']) =>
            {
                serde_json::to_string(value).expect("a string serialises")
            }
            Cell::Text(value) => value.clone(),
        }
    }
}

type Rows = Vec<Vec<Cell>>;

/// Compares `actual` (the rows of table `table`) with `expected` on the columns the
/// expected rows name. `None` when they match; otherwise the diff, one line per finding.
pub fn compare(
    table: &str,
    expected: &Expected,
    actual: &[RecordBatch],
    schema: &SchemaRef,
) -> Option<String> {
    let mut columns: Vec<String> = Vec::new();
    for row in &expected.rows {
        for column in row.keys() {
            if !columns.contains(column) {
                columns.push(column.clone());
            }
        }
    }
    let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let unknown: Vec<&String> = columns
        .iter()
        .filter(|c| !known.contains(&c.as_str()))
        .collect();
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(|c| format!("`{c}`")).collect();
        return Some(format!(
            "table `{table}` has no column {}; its columns: {}",
            names.join(", "),
            known.join(", ")
        ));
    }
    // The output's column order, so diffs read like the table.
    columns.sort_by_key(|column| known.iter().position(|k| k == column));
    let projected = Schema::new(
        columns
            .iter()
            .map(|c| schema.field_with_name(c).expect("checked above").clone())
            .collect::<Vec<_>>(),
    );
    let projected = std::sync::Arc::new(projected);

    let literal_rows: Vec<Vec<Option<Literal>>> = expected
        .rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| row.get(c).cloned().flatten())
                .collect()
        })
        .collect();
    let expected_batch = match crate::literals::literal_batch(&projected, &columns, &literal_rows) {
        Ok(batch) => batch,
        Err(error) => {
            return Some(format!(
                "{} row {}, column `{}`: {} (the type of the table's column)",
                expected.key, error.row, error.column, error.message
            ));
        }
    };
    let actual_batch = concat_batches(schema, actual).expect("one schema");
    let actual_rows = cells(&actual_batch, &columns);
    let mut expected_rows = cells(&expected_batch, &columns);
    // A row compares only the columns it names (an explicit `null` expects null).
    for (row, cells) in expected.rows.iter().zip(&mut expected_rows) {
        for (column, cell) in columns.iter().zip(cells.iter_mut()) {
            if !row.contains_key(column) {
                *cell = Cell::Any;
            }
        }
    }
    diff(table, &columns, expected, &expected_rows, &actual_rows)
}

fn cells(batch: &RecordBatch, columns: &[String]) -> Rows {
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|c| batch.column_by_name(c).expect("a compared column").clone())
        .collect();
    let options = FormatOptions::default();
    let formatters: Vec<ArrayFormatter> = arrays
        .iter()
        .map(|array| ArrayFormatter::try_new(array.as_ref(), &options).expect("displayable"))
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            arrays
                .iter()
                .zip(&formatters)
                .map(|(array, formatter)| {
                    if array.is_null(row) {
                        return Cell::Null;
                    }
                    match array.data_type() {
                        DataType::Float64 => {
                            Cell::Float(array.as_primitive::<Float64Type>().value(row))
                        }
                        DataType::Float32 => {
                            Cell::Float(array.as_primitive::<Float32Type>().value(row) as f64)
                        }
                        _ => Cell::Text(formatter.value(row).to_string()),
                    }
                })
                .collect()
        })
        .collect()
}

fn diff(
    table: &str,
    columns: &[String],
    expected: &Expected,
    expected_rows: &Rows,
    actual_rows: &Rows,
) -> Option<String> {
    let tolerance = expected.tolerance;
    let same = |a: &[Cell], e: &[Cell]| a.iter().zip(e).all(|(a, e)| a.matches(e, tolerance));
    let mut missing: Vec<usize> = Vec::new();
    let mut unexpected: Vec<usize> = Vec::new();
    let mut out_of_order: Vec<(usize, usize)> = Vec::new();
    if expected.ordered {
        let mut matched = vec![false; actual_rows.len()];
        for (index, row) in expected_rows.iter().enumerate() {
            match actual_rows.get(index) {
                Some(actual) if same(actual, row) => matched[index] = true,
                _ => match actual_rows
                    .iter()
                    .enumerate()
                    .find(|(i, actual)| !matched[*i] && same(actual, row))
                {
                    Some((found, _)) => {
                        matched[found] = true;
                        out_of_order.push((index, found));
                    }
                    None => missing.push(index),
                },
            }
        }
        unexpected = (0..actual_rows.len()).filter(|i| !matched[*i]).collect();
    } else {
        let mut matched = vec![false; actual_rows.len()];
        for (index, row) in expected_rows.iter().enumerate() {
            match actual_rows
                .iter()
                .enumerate()
                .find(|(i, actual)| !matched[*i] && same(actual, row))
            {
                Some((found, _)) => matched[found] = true,
                None => missing.push(index),
            }
        }
        unexpected.extend((0..actual_rows.len()).filter(|i| !matched[*i]));
    }
    if missing.is_empty() && unexpected.is_empty() && out_of_order.is_empty() {
        return None;
    }

    // Pair a missing and an unexpected row with the same key: one row that differs.
    let key_columns: Vec<usize> = expected
        .row_key
        .iter()
        .filter_map(|k| columns.iter().position(|c| c == k))
        .collect();
    let mut differing: Vec<(usize, usize)> = Vec::new();
    if !key_columns.is_empty() {
        missing.retain(|&e| {
            let found = unexpected.iter().position(|&a| {
                key_columns
                    .iter()
                    .all(|&k| actual_rows[a][k].matches(&expected_rows[e][k], tolerance))
            });
            match found {
                Some(position) => {
                    differing.push((e, unexpected.remove(position)));
                    false
                }
                None => true,
            }
        });
    }

    let show = |row: &[Cell]| -> String {
        let fields: Vec<String> = columns
            .iter()
            .zip(row)
            .filter(|(_, cell)| !matches!(cell, Cell::Any))
            .map(|(column, cell)| format!("{column}: {}", cell.show()))
            .collect();
        format!("{{{}}}", fields.join(", "))
    };
    let mut out = format!(
        "table `{table}`: {} expected, {} found",
        rows(expected_rows.len()),
        rows(actual_rows.len())
    );
    for (e, a) in &differing {
        let key: Vec<String> = key_columns
            .iter()
            .map(|&k| format!("{}={}", columns[k], expected_rows[*e][k].show()))
            .collect();
        let changes: Vec<String> = columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !actual_rows[*a][*i].matches(&expected_rows[*e][*i], tolerance))
            .map(|(i, column)| {
                format!(
                    "{column} expected {}, found {}",
                    expected_rows[*e][i].show(),
                    actual_rows[*a][i].show()
                )
            })
            .collect();
        out.push_str(&format!(
            "\n  differing   {}: {}",
            key.join(", "),
            changes.join("; ")
        ));
    }
    for e in &missing {
        out.push_str(&format!("\n  missing     {}", show(&expected_rows[*e])));
    }
    for a in &unexpected {
        out.push_str(&format!("\n  unexpected  {}", show(&actual_rows[*a])));
    }
    for (e, a) in &out_of_order {
        out.push_str(&format!(
            "\n  misplaced   {} expected at row {e}, found at row {a}",
            show(&expected_rows[*e])
        ));
    }
    Some(out)
}

fn rows(count: usize) -> String {
    if count == 1 {
        "1 row".to_string()
    } else {
        format!("{count} rows")
    }
}
