//! `segflow show`: tables of rows for people, CSV or JSON for tools.

use arrow::array::RecordBatch;
use segflow_engine::{Preview, Previewed};
use segflow_plan::Chosen;
use serde_json::{Value, json};

use crate::args::ShowFormat;
use crate::summary;

/// CSV has no place for a second table's header: refused before anything runs.
pub fn refuse_csv_of_many(format: ShowFormat, chosen: &Chosen) -> anyhow::Result<()> {
    let tables = chosen.sources.len() + chosen.steps.len();
    if format == ShowFormat::Csv && tables > 1 {
        let names: Vec<&str> = chosen
            .sources
            .iter()
            .chain(&chosen.steps)
            .map(String::as_str)
            .collect();
        return Err(crate::UsageError(format!(
            "--format csv prints one table, and the selectors pick {tables}: {}; pick one, or use --format table or json",
            names.join(", ")
        ))
        .into());
    }
    Ok(())
}

pub fn print(format: ShowFormat, previewed: &Previewed) -> anyhow::Result<()> {
    match format {
        ShowFormat::Table => summary::print_text(&tables(&previewed.tables)?),
        ShowFormat::Csv => summary::print_text(&csv(&previewed.tables)?),
        ShowFormat::Json => summary::print_json(json(previewed)?),
    }
    Ok(())
}

/// Each table under a line naming it, its kind and how many rows it has.
pub fn tables(previews: &[Preview]) -> anyhow::Result<String> {
    let mut out = Vec::new();
    for preview in previews {
        let shown: usize = preview.rows.iter().map(RecordBatch::num_rows).sum();
        let count = match preview.total_rows {
            Some(total) => format!("{} rows, first {shown} shown", summary::thousands(total)),
            None => format!("first {shown} rows"),
        };
        let table = if preview.rows.is_empty() {
            // Still show the columns: an empty result's header is what the analyst checks.
            let empty = RecordBatch::new_empty(preview.schema.clone());
            arrow::util::pretty::pretty_format_batches(&[empty])?
        } else {
            arrow::util::pretty::pretty_format_batches(&preview.rows)?
        };
        out.push(format!(
            "{} ({}): {count}\n{table}",
            preview.name, preview.kind
        ));
    }
    Ok(out.join("\n\n"))
}

/// One table as CSV with a header line.
pub fn csv(previews: &[Preview]) -> anyhow::Result<String> {
    let mut buffer = Vec::new();
    for preview in previews {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut buffer);
        if preview.rows.is_empty() {
            writer.write(&RecordBatch::new_empty(preview.schema.clone()))?;
        }
        for batch in &preview.rows {
            writer.write(batch)?;
        }
    }
    Ok(String::from_utf8(buffer)?.trim_end().to_string())
}

/// Every table with its columns and types and its rows as objects; the caller masks it.
pub fn json(previewed: &Previewed) -> anyhow::Result<Value> {
    let mut tables = Vec::new();
    for preview in &previewed.tables {
        // Nulls written out: a row object without its null columns reads as a schema change.
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(Vec::new());
        for batch in &preview.rows {
            writer.write(batch)?;
        }
        writer.finish()?;
        let written = writer.into_inner();
        let rows: Value = if written.is_empty() {
            json!([])
        } else {
            serde_json::from_slice(&written)?
        };
        tables.push(json!({
            "name": preview.name,
            "kind": preview.kind,
            "total_rows": preview.total_rows,
            "columns": preview.schema.fields().iter().map(|field| json!({
                "name": field.name(),
                "type": field.data_type().to_string(),
                "nullable": field.is_nullable(),
            })).collect::<Vec<_>>(),
            "rows": rows,
        }));
    }
    Ok(json!({
        "tables": tables,
        "failed_checks": previewed.failed_checks,
    }))
}
