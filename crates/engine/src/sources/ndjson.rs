//! NDJSON sources with a declared schema, parsed line by line: a line that is not JSON, a
//! value of the wrong type, or a null (or absent) value in a `nullable: false` column is
//! set aside (`on_error: quarantine`) or named with its file, line and column (`fail`).
//!
//! Lines are decoded with arrow-json, the decoder DataFusion's own NDJSON reader uses, so
//! a line reads the same either way. A chunk of lines is decoded at once; only a chunk
//! that fails is decoded again line by line, to find the lines at fault.

use std::io::{BufRead, BufReader, Read};

use arrow::array::{Array, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::json::ReaderBuilder;
use object_store::ObjectStoreExt;
use segflow_pipeline::Source;

use super::parsed::{BATCH_ROWS, BadRow, Parsed, SourceFile, relaxed};

pub async fn read_file(
    file: &SourceFile,
    source: &Source,
    schema: &SchemaRef,
    stop_at_first: bool,
) -> datafusion::error::Result<Parsed> {
    let bytes = file.store.get(&file.path).await?.bytes().await?;
    let gzip = source.extension.ends_with(".gz");
    let name = file.url.clone();
    let schema = schema.clone();
    // Parsing is CPU work: keep it off the threads that drive I/O.
    tokio::task::spawn_blocking(move || {
        let reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(&bytes[..]))
        } else {
            Box::new(&bytes[..])
        };
        parse(reader, &name, &schema, stop_at_first)
    })
    .await
    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
}

/// A line waiting to be decoded: where it is, and its text.
struct Line {
    number: u64,
    text: String,
}

fn parse(
    reader: impl Read,
    file: &str,
    schema: &SchemaRef,
    stop_at_first: bool,
) -> datafusion::error::Result<Parsed> {
    let mut parsed = Parsed {
        rows_read: 0,
        kept: Vec::new(),
        bad: Vec::new(),
    };
    let mut chunk: Vec<Line> = Vec::new();
    let mut reader = BufReader::new(reader);
    let mut bytes = Vec::new();
    let mut number = 0;
    loop {
        bytes.clear();
        let read = reader.read_until(b'\n', &mut bytes).map_err(|error| {
            datafusion::error::DataFusionError::Execution(format!(
                "{file}: cannot read NDJSON: {error}"
            ))
        })?;
        if read == 0 {
            break;
        }
        number += 1;
        let line = match std::str::from_utf8(&bytes) {
            Ok(text) => text.trim_end_matches(['\n', '\r']),
            Err(_) => {
                parsed.rows_read += 1;
                parsed.bad.push(BadRow {
                    file: file.to_string(),
                    line: Some(number),
                    column: None,
                    reason: "not valid UTF-8".to_string(),
                    raw: String::from_utf8_lossy(&bytes).trim_end().to_string(),
                });
                if stop_at_first {
                    return Ok(parsed);
                }
                continue;
            }
        };
        // Blank lines hold no record, for DataFusion's reader as for this one.
        if line.trim().is_empty() {
            continue;
        }
        parsed.rows_read += 1;
        if schema.fields().is_empty() {
            // No columns to decode into (the schema could not be inferred): JSON syntax
            // is all there is to check.
            if let Err(error) = serde_json::from_str::<serde::de::IgnoredAny>(line) {
                parsed.bad.push(BadRow {
                    file: file.to_string(),
                    line: Some(number),
                    column: None,
                    reason: format!("not a JSON value: {error}"),
                    raw: line.to_string(),
                });
                if stop_at_first {
                    return Ok(parsed);
                }
            }
            continue;
        }
        chunk.push(Line {
            number,
            text: line.to_string(),
        });
        if chunk.len() == BATCH_ROWS {
            decode_chunk(&mut chunk, file, schema, &mut parsed)?;
            if stop_at_first && !parsed.bad.is_empty() {
                parsed.bad.truncate(1);
                return Ok(parsed);
            }
        }
    }
    decode_chunk(&mut chunk, file, schema, &mut parsed)?;
    parsed.bad.sort_by_key(|bad| bad.line);
    if stop_at_first {
        parsed.bad.truncate(1);
    }
    Ok(parsed)
}

/// Decodes the waiting lines: kept rows to `parsed.kept`, lines at fault to `parsed.bad`.
fn decode_chunk(
    chunk: &mut Vec<Line>,
    file: &str,
    schema: &SchemaRef,
    parsed: &mut Parsed,
) -> datafusion::error::Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let lines = std::mem::take(chunk);
    let batches: Vec<(Vec<Line>, RecordBatch)> = match decode(&lines, schema) {
        Ok(batch) => vec![(lines, batch)],
        // Some line does not decode: one at a time, to tell which.
        Err(_) => {
            let mut decoded = Vec::new();
            for line in lines {
                match decode(std::slice::from_ref(&line), schema) {
                    Ok(batch) => decoded.push((vec![line], batch)),
                    Err(reason) => parsed.bad.push(BadRow {
                        file: file.to_string(),
                        line: Some(line.number),
                        column: column_named_in(&reason, schema),
                        reason,
                        raw: line.text,
                    }),
                }
            }
            decoded
        }
    };
    for (lines, batch) in batches {
        keep_non_null(lines, batch, file, schema, parsed)?;
    }
    Ok(())
}

/// `lines` decoded as one batch with every column nullable (nullability is checked after,
/// per row, so that a null names its line), or arrow-json's reason why not.
fn decode(lines: &[Line], schema: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    let mut decoder = ReaderBuilder::new(relaxed(schema))
        .with_batch_size(lines.len().max(1))
        .build_decoder()
        .map_err(|error| error.to_string())?;
    let mut text = String::new();
    for line in lines {
        text.push_str(&line.text);
        text.push('\n');
    }
    let consumed = decoder
        .decode(text.as_bytes())
        .map_err(|error| explain(&error.to_string()))?;
    if consumed < text.len() {
        return Err("more than one JSON value, or a value cut short".to_string());
    }
    let batch = decoder
        .flush()
        .map_err(|error| explain(&error.to_string()))?
        .unwrap_or_else(|| RecordBatch::new_empty(relaxed(schema)));
    if batch.num_rows() != lines.len() {
        // A line holding two objects, or an object cut short and finished by the next.
        return Err(format!(
            "{} lines decode to {} records: not one JSON object per line",
            lines.len(),
            batch.num_rows()
        ));
    }
    Ok(batch)
}

/// arrow-json's words, without the prefix it repeats.
fn explain(message: &str) -> String {
    message
        .trim_start_matches("Json error: ")
        .trim_start_matches("Parser error: ")
        .to_string()
}

/// The declared column an arrow-json message is about (`whilst decoding field 'x'`).
fn column_named_in(reason: &str, schema: &SchemaRef) -> Option<String> {
    let rest = &reason[reason.find("field '")? + "field '".len()..];
    let name = &rest[..rest.find('\'')?];
    schema.field_with_name(name).ok().map(|f| f.name().clone())
}

/// Keeps the rows of `batch` with a value in every `nullable: false` column; the others go
/// to `parsed.bad`, naming the first such column.
fn keep_non_null(
    lines: Vec<Line>,
    batch: RecordBatch,
    file: &str,
    schema: &SchemaRef,
    parsed: &mut Parsed,
) -> datafusion::error::Result<()> {
    let mut problems: Vec<Option<String>> = vec![None; batch.num_rows()];
    for (index, field) in schema.fields().iter().enumerate() {
        if field.is_nullable() {
            continue;
        }
        let column = batch.column(index);
        for (row, problem) in problems.iter_mut().enumerate() {
            if problem.is_none() && column.is_null(row) {
                *problem = Some(field.name().clone());
            }
        }
    }
    let keep = BooleanArray::from(problems.iter().map(Option::is_none).collect::<Vec<_>>());
    let kept = filter_record_batch(&batch, &keep)?;
    let kept = RecordBatch::try_new(schema.clone(), kept.columns().to_vec())?;
    if kept.num_rows() > 0 {
        parsed.kept.push(kept);
    }
    for (line, problem) in lines.into_iter().zip(problems) {
        if let Some(column) = problem {
            parsed.bad.push(BadRow {
                file: file.to_string(),
                line: Some(line.number),
                reason: format!("{column}: null or absent, but the column is not nullable"),
                column: Some(column),
                raw: line.text,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Float64, true),
            Field::new("region", DataType::Utf8, false),
        ]))
    }

    const TEXT: &str = r#"{"id": 1, "price": 2.5, "region": "north"}
{"id": 2, "price": "x", "region": "south"}

{"id": 3, "price": 1.0
{"id": null, "price": 4.0, "region": "east"}
{"id": 5, "region": "west"}
{"id": 6, "price": 7.25}
"#;

    #[test]
    fn keeps_lines_that_decode_and_names_why_the_others_do_not() {
        let parsed = parse(TEXT.as_bytes(), "t.json", &schema(), false).unwrap();
        assert_eq!(parsed.rows_read, 6, "the blank line is no record");
        let kept: Vec<i64> = parsed
            .kept
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(kept, [1, 5]);
        let prices: Vec<Option<f64>> = parsed
            .kept
            .iter()
            .flat_map(|b| {
                b.column(1)
                    .as_primitive::<Float64Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            prices,
            [Some(2.5), None],
            "an absent nullable value is null"
        );
        let bad: Vec<(Option<u64>, Option<&str>)> = parsed
            .bad
            .iter()
            .map(|b| (b.line, b.column.as_deref()))
            .collect();
        assert_eq!(
            bad,
            [
                (Some(2), Some("price")),
                (Some(4), None),
                (Some(5), Some("id")),
                (Some(7), Some("region")),
            ],
            "{:#?}",
            parsed.bad
        );
        assert_eq!(
            parsed.bad[3].reason,
            "region: null or absent, but the column is not nullable"
        );
        assert_eq!(parsed.bad[1].raw, r#"{"id": 3, "price": 1.0"#);
    }

    #[test]
    fn stops_at_the_first_bad_line_when_asked() {
        let parsed = parse(TEXT.as_bytes(), "t.json", &schema(), true).unwrap();
        assert_eq!(parsed.bad.len(), 1);
        assert_eq!(parsed.bad[0].line, Some(2));
    }
}
