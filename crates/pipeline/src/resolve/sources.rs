//! Sources: format, location, CSV options, declared schema, what to do with bad rows.

use std::collections::HashSet;

use url::Url;

use super::{Resolver, any_of, check_identifier, did_you_mean};
use crate::raw::{RawColumn, RawCsvOptions, RawSource};
use crate::{Column, ColumnType, CsvOptions, Format, OnError, Problem, Source, Store};

impl Resolver {
    pub(super) fn resolve_sources(&mut self, raw: Vec<RawSource>, stores: &[Store]) -> Vec<Source> {
        if raw.is_empty() {
            self.problem("sources", "declare at least one source");
        }
        let mut sources = Vec::new();
        for (index, source) in raw.into_iter().enumerate() {
            let key = format!("sources[{index}]");
            check_identifier(
                &mut self.problems,
                &format!("{key}.name"),
                "source name",
                &source.name,
            );
            let format = Format::parse(&source.format);
            if format.is_none() {
                self.problem(
                    format!("{key}.format"),
                    format!(
                        "unknown format `{}`: use csv, ndjson or parquet",
                        source.format
                    ),
                );
            }
            if source.csv.is_some() && format != Some(Format::Csv) {
                self.problem(
                    format!("{key}.csv"),
                    "csv options apply only to `format: csv`",
                );
            }
            let csv = self.csv_options(&key, source.csv);
            let schema = source
                .schema
                .map(|columns| self.schema(&format!("{key}.schema"), columns));
            let on_error = match source
                .on_error
                .as_deref()
                .map(|text| (text, OnError::parse(text)))
            {
                None => OnError::Fail,
                Some((_, Some(on_error))) => on_error,
                Some((other, None)) => {
                    self.problem(
                        format!("{key}.on_error"),
                        format!(
                            "unknown value `{other}`: use {}",
                            any_of([OnError::Fail, OnError::Quarantine].map(OnError::as_str))
                        ),
                    );
                    OnError::Fail
                }
            };
            if on_error == OnError::Quarantine {
                if format == Some(Format::Parquet) {
                    self.problem(
                        format!("{key}.on_error"),
                        "`on_error: quarantine` applies to csv and ndjson sources (parquet rows are typed by their writer)",
                    );
                }
                if schema.is_none() {
                    self.problem(
                        format!("{key}.on_error"),
                        "`on_error: quarantine` needs a `schema`: rows are checked against the declared columns and types",
                    );
                }
            }
            let partition_key = source
                .partition_key
                .filter(|column| self.partition_key(&format!("{key}.partition_key"), column));
            if let (Some(column), Some(declared)) = (&partition_key, &schema) {
                self.declared_partition_key(&format!("{key}.partition_key"), column, declared);
            }
            let location = self.location(&key, &source.store, &source.path, stores);
            if let (Some(location), Some(format)) = (location, format) {
                let extension = source
                    .extension
                    .unwrap_or_else(|| default_extension(&location.url, format));
                sources.push(Source {
                    name: source.name,
                    location,
                    format,
                    csv,
                    schema,
                    extension,
                    on_error,
                    partition_key,
                });
            }
        }
        sources
    }

    /// A `partition_key` names a column; whether the source has it is known once its
    /// schema is (declared: [`Resolver::declared_partition_key`]; inferred: at `check`).
    pub(super) fn partition_key(&mut self, key: &str, column: &str) -> bool {
        if column.trim().is_empty() {
            self.problem(key, "name the column that identifies a customer");
            return false;
        }
        true
    }

    /// A source's `partition_key` against its declared columns: there, and a type buckets
    /// can be made from.
    fn declared_partition_key(&mut self, key: &str, column: &str, declared: &[Column]) {
        match declared.iter().find(|c| c.name == column) {
            None => {
                let names: Vec<&str> = declared.iter().map(|c| c.name.as_str()).collect();
                self.problem(
                    key,
                    format!(
                        "column `{column}` is not in the source's schema{}; its columns: {}",
                        did_you_mean(column, &names),
                        names.join(", ")
                    ),
                );
            }
            Some(declared) if !declared.data_type.can_key_buckets() => self.problem(
                key,
                format!(
                    "`{column}` is declared {}: a partition key is an integer or text column (equal floats, dates or times can be written differently)",
                    declared.data_type.as_str()
                ),
            ),
            Some(_) => {}
        }
    }

    pub(super) fn csv_options(&mut self, key: &str, raw: Option<RawCsvOptions>) -> CsvOptions {
        let mut options = CsvOptions::default();
        let Some(raw) = raw else {
            return options;
        };
        if let Some(has_header) = raw.has_header {
            options.has_header = has_header;
        }
        for (name, value, target) in [
            ("delimiter", raw.delimiter, &mut options.delimiter),
            ("quote", raw.quote, &mut options.quote),
        ] {
            let Some(value) = value else { continue };
            match value.as_bytes() {
                [byte] => *target = *byte,
                _ => self.problems.push(Problem::new(
                    format!("{key}.csv.{name}"),
                    format!("must be exactly one ASCII character, got `{value}`"),
                )),
            }
        }
        options.null_value = raw.null_value;
        options
    }

    pub(crate) fn schema(&mut self, key: &str, columns: Vec<RawColumn>) -> Vec<Column> {
        if columns.is_empty() {
            self.problem(key, "an explicit schema needs at least one column");
        }
        let mut seen = HashSet::new();
        let mut resolved = Vec::new();
        for (index, column) in columns.into_iter().enumerate() {
            let column_key = format!("{key}[{index}]");
            if !seen.insert(column.name.clone()) {
                self.problem(
                    format!("{column_key}.name"),
                    format!("column `{}` is declared twice", column.name),
                );
            }
            match ColumnType::parse(&column.data_type) {
                Some(data_type) => resolved.push(Column {
                    name: column.name,
                    data_type,
                    nullable: column.nullable.unwrap_or(true),
                }),
                None => {
                    let names: Vec<&str> =
                        ColumnType::NAMES.iter().map(|(name, _)| *name).collect();
                    self.problem(
                        format!("{column_key}.type"),
                        format!(
                            "unknown type `{}`{}; types: {}",
                            column.data_type,
                            did_you_mean(&column.data_type, &names),
                            names.join(", ")
                        ),
                    );
                }
            }
        }
        resolved
    }
}

/// A single file is read whatever its ending; a folder or glob only yields files with the
/// format's usual extension.
fn default_extension(url: &Url, format: Format) -> String {
    let last = url.path().rsplit('/').next().unwrap_or_default();
    let is_file = !last.is_empty() && !last.contains(['*', '?', '[']) && last.contains('.');
    if is_file {
        let first_dot = last.find('.').unwrap_or(0);
        last[first_dot..].to_string()
    } else {
        format.default_extension().to_string()
    }
}
