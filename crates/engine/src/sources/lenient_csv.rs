//! CSV sources whose bad rows are quarantined (`on_error: quarantine`), and the search that
//! names the file, line and column of a bad row when a strict read fails.
//!
//! DataFusion's CSV reader stops the whole query at the first row that does not parse and
//! has no permissive mode, so these sources are parsed here with the `csv` crate: each
//! record is checked against the declared columns (number of fields, then a cast of every
//! field to its type, with the same Arrow casts DataFusion's reader uses), and either kept as
//! a typed Arrow row or set aside with its file, line, raw text and reason.
//!
//! The kept rows are held in memory as the source's table, like a step's result.

use std::io::Read;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, StringBuilder};
use arrow::compute::{CastOptions, cast_with_options, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::util::display::FormatOptions;
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
    let options = ParseOptions {
        file: file.url.clone(),
        has_header: source.csv.has_header,
        delimiter: source.csv.delimiter,
        quote: source.csv.quote,
        null_value: source.csv.null_value.clone(),
        stop_at_first,
    };
    let schema = schema.clone();
    // Parsing is CPU work: keep it off the threads that drive I/O.
    tokio::task::spawn_blocking(move || {
        let reader: Box<dyn Read> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(&bytes[..]))
        } else {
            Box::new(&bytes[..])
        };
        parse(reader, &options, &schema)
    })
    .await
    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
}

struct ParseOptions {
    file: String,
    has_header: bool,
    delimiter: u8,
    quote: u8,
    null_value: Option<String>,
    stop_at_first: bool,
}

fn parse(
    reader: impl Read,
    options: &ParseOptions,
    schema: &SchemaRef,
) -> datafusion::error::Result<Parsed> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(options.has_header)
        .delimiter(options.delimiter)
        .quote(options.quote)
        .flexible(true)
        .from_reader(reader);
    let mut parsed = Parsed {
        rows_read: 0,
        kept: Vec::new(),
        bad: Vec::new(),
    };
    let mut chunk = Chunk::new(schema.fields().len());
    let mut record = csv::ByteRecord::new();
    loop {
        let more = csv.read_byte_record(&mut record).map_err(|error| {
            datafusion::error::DataFusionError::Execution(format!(
                "{}: cannot read CSV: {error}",
                options.file
            ))
        })?;
        if !more {
            break;
        }
        parsed.rows_read += 1;
        let line = record.position().map(|p| p.line());
        if let Some(reason) = chunk.push(&record, line, options) {
            parsed.bad.push(BadRow {
                file: options.file.clone(),
                line,
                column: None,
                reason,
                raw: raw_text(&record, options.delimiter),
            });
        }
        if chunk.len() == BATCH_ROWS || (options.stop_at_first && !parsed.bad.is_empty()) {
            chunk.finish(schema, options, &mut parsed)?;
        }
        if options.stop_at_first && !parsed.bad.is_empty() {
            // Rows before this one in the chunk were cast above: the first bad row is first.
            parsed.bad.truncate(1);
            return Ok(parsed);
        }
    }
    chunk.finish(schema, options, &mut parsed)?;
    Ok(parsed)
}

/// Records of the right width, as text, waiting to be cast to their types.
struct Chunk {
    columns: Vec<StringBuilder>,
    records: Vec<(Option<u64>, csv::ByteRecord)>,
    /// Where this chunk's bad rows start in `Parsed::bad`.
    first_bad: usize,
}

impl Chunk {
    fn new(width: usize) -> Chunk {
        Chunk {
            columns: (0..width).map(|_| StringBuilder::new()).collect(),
            records: Vec::new(),
            first_bad: 0,
        }
    }

    fn len(&self) -> usize {
        self.records.len()
    }

    /// Adds a record, or returns why it cannot be added (wrong width, not UTF-8).
    fn push(
        &mut self,
        record: &csv::ByteRecord,
        line: Option<u64>,
        options: &ParseOptions,
    ) -> Option<String> {
        if record.len() != self.columns.len() {
            return Some(format!(
                "expected {} fields, found {}",
                self.columns.len(),
                record.len()
            ));
        }
        let mut fields = Vec::with_capacity(record.len());
        for (index, field) in record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) => fields.push(text),
                Err(_) => return Some(format!("field {} is not valid UTF-8", index + 1)),
            }
        }
        for (builder, text) in self.columns.iter_mut().zip(fields) {
            let is_null = text.is_empty() || options.null_value.as_deref() == Some(text);
            builder.append_option((!is_null).then_some(text));
        }
        self.records.push((line, record.clone()));
        None
    }

    /// Casts the waiting records to their types: those that cast are kept, the others
    /// become bad rows naming the first column that does not.
    fn finish(
        &mut self,
        schema: &SchemaRef,
        options: &ParseOptions,
        parsed: &mut Parsed,
    ) -> datafusion::error::Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        let text: Vec<StringArray> = self.columns.iter_mut().map(|b| b.finish()).collect();
        let cast_options = CastOptions {
            safe: true,
            format_options: FormatOptions::default(),
        };
        let mut typed: Vec<ArrayRef> = Vec::with_capacity(text.len());
        // Per row, the first column that does not fit and why.
        let mut problems: Vec<Option<(usize, String)>> = vec![None; self.records.len()];
        for (index, (raw, field)) in text.iter().zip(schema.fields()).enumerate() {
            let array = cast_with_options(raw, field.data_type(), &cast_options)?;
            for (row, problem) in problems.iter_mut().enumerate() {
                if problem.is_some() {
                    continue;
                }
                if raw.is_valid(row) && array.is_null(row) {
                    *problem = Some((
                        index,
                        format!(
                            "{}: `{}` is not a valid {}",
                            field.name(),
                            raw.value(row),
                            type_name(field.data_type())
                        ),
                    ));
                } else if raw.is_null(row) && !field.is_nullable() {
                    *problem = Some((
                        index,
                        format!("{}: empty, but the column is not nullable", field.name()),
                    ));
                }
            }
            typed.push(array);
        }
        let keep = BooleanArray::from(problems.iter().map(Option::is_none).collect::<Vec<_>>());
        // Nullability is checked above for the kept rows; the filter below applies it.
        let batch = RecordBatch::try_new(relaxed(schema), typed)?;
        let kept = filter_record_batch(&batch, &keep)?;
        let kept = RecordBatch::try_new(schema.clone(), kept.columns().to_vec())?;
        if kept.num_rows() > 0 {
            parsed.kept.push(kept);
        }
        let records = std::mem::take(&mut self.records);
        for ((line, record), problem) in records.into_iter().zip(problems) {
            let Some((index, reason)) = problem else {
                continue;
            };
            parsed.bad.push(BadRow {
                file: options.file.clone(),
                line,
                column: Some(schema.field(index).name().clone()),
                reason,
                raw: raw_text(&record, options.delimiter),
            });
        }
        // Within a chunk, width problems were found before cast problems; keep file order.
        parsed.bad[self.first_bad..].sort_by_key(|bad| bad.line);
        self.first_bad = parsed.bad.len();
        Ok(())
    }
}

pub(super) fn type_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int32 => "int32",
        DataType::Int64 => "int64",
        DataType::Float64 => "float64",
        DataType::Boolean => "boolean",
        DataType::Date32 => "date",
        DataType::Timestamp(_, _) => "timestamp",
        _ => "string",
    }
}

/// The record written back as one CSV line (quoted where needed), for the rejects table.
fn raw_text(record: &csv::ByteRecord, delimiter: u8) -> String {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = writer.write_byte_record(record);
    let bytes = writer.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches(['\r', '\n'])
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema};

    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("price", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn options(stop_at_first: bool) -> ParseOptions {
        ParseOptions {
            file: "data/t.csv".to_string(),
            has_header: true,
            delimiter: b',',
            quote: b'"',
            null_value: Some("NA".to_string()),
            stop_at_first,
        }
    }

    const TEXT: &str = "id,price,name\n\
        1,2.5,a\n\
        2,x,b\n\
        3,1.0\n\
        4,NA,\"d, e\"\n\
        five,1,f\n\
        6,7.25,g,extra\n";

    #[test]
    fn keeps_rows_that_cast_and_names_why_the_others_do_not() {
        let parsed = parse(TEXT.as_bytes(), &options(false), &schema()).unwrap();
        assert_eq!(parsed.rows_read, 6);
        let kept = &parsed.kept[0];
        assert_eq!(kept.num_rows(), 2);
        let ids: Vec<i64> = kept.column(0).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(ids, [1, 4]);
        let prices = kept.column(1).as_primitive::<Float64Type>();
        assert_eq!(prices.value(0), 2.5);
        assert!(prices.is_null(1), "the declared null value reads as null");
        assert_eq!(kept.column(2).as_string::<i32>().value(1), "d, e");

        let bad: Vec<(Option<u64>, &str, &str)> = parsed
            .bad
            .iter()
            .map(|b| (b.line, b.reason.as_str(), b.raw.as_str()))
            .collect();
        assert_eq!(
            bad,
            [
                (Some(3), "price: `x` is not a valid float64", "2,x,b"),
                (Some(4), "expected 3 fields, found 2", "3,1.0"),
                (Some(6), "id: `five` is not a valid int64", "five,1,f"),
                (Some(7), "expected 3 fields, found 4", "6,7.25,g,extra"),
            ]
        );
        assert_eq!(parsed.bad[0].column.as_deref(), Some("price"));
    }

    #[test]
    fn stops_at_the_first_bad_row_when_asked() {
        let parsed = parse(TEXT.as_bytes(), &options(true), &schema()).unwrap();
        assert_eq!(parsed.bad.len(), 1);
        assert_eq!(parsed.bad[0].line, Some(3));
    }

    #[test]
    fn quoted_fields_with_the_delimiter_are_written_back_quoted() {
        let record = csv::ByteRecord::from(vec!["1", "a, b", "say \"hi\""]);
        assert_eq!(raw_text(&record, b','), r#"1,"a, b","say ""hi""""#);
    }
}
