//! Source files that are wrong in ways a real lake gets wrong: Parquet files of one folder
//! that disagree on their columns, a corrupt file, NDJSON lines that do not fit the
//! declared schema. Each either fails naming the source, the file and the column (exit 4,
//! the data's fault), or reads what can be read and says what it did.

mod common;

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::Project;

/// Customers in two far-apart groups, as the segment stage needs them.
fn pipeline(format: &str, path: &str, schema: Option<&str>) -> String {
    let schema = schema.map_or(String::new(), |columns| format!("    schema:\n{columns}"));
    format!(
        r#"name: lake
stores:
  data: {{ url: "file://../data" }}
  out: {{ url: "file://../out" }}
sources:
  - name: customers
    store: data
    path: {path}
    format: {format}
{schema}segment:
  input: customers
  key: customer_id
  features: [x]
  carry: [country]
  k: 2
  seed: 1
  output: {{ store: out, path: lake }}
"#
    )
}

const DECLARED: &str = "      - { name: customer_id, type: int64, nullable: false }
      - { name: x, type: float64, nullable: false }
      - { name: country, type: string }
";

/// [`DECLARED`] with `country` declared `nullable: false`.
fn country_required() -> String {
    DECLARED.replace(
        "{ name: country, type: string }",
        "{ name: country, type: string, nullable: false }",
    )
}

/// A Parquet file of customers `ids`, with `country` unless `with_country` is false and
/// the key as Int32 when `narrow_key` is set.
fn parquet_file(project: &Project, name: &str, ids: std::ops::Range<i64>, columns: Columns) {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    if columns.key {
        if columns.narrow_key {
            fields.push(Field::new("customer_id", DataType::Int32, false));
            arrays.push(Arc::new(Int32Array::from_iter_values(
                ids.clone().map(|id| id as i32),
            )));
        } else {
            fields.push(Field::new("customer_id", DataType::Int64, false));
            arrays.push(Arc::new(Int64Array::from_iter_values(ids.clone())));
        }
    }
    fields.push(Field::new("x", DataType::Float64, false));
    arrays.push(Arc::new(Float64Array::from_iter_values(
        ids.clone().map(|id| if id % 2 == 0 { 1.0 } else { 100.0 }),
    )));
    if columns.country {
        fields.push(Field::new("country", DataType::Utf8, true));
        arrays.push(Arc::new(StringArray::from_iter_values(
            ids.clone().map(|_| "United Kingdom"),
        )));
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
    let path = project.path(&format!("data/customers/{name}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[derive(Clone, Copy)]
struct Columns {
    key: bool,
    narrow_key: bool,
    country: bool,
}

const ALL: Columns = Columns {
    key: true,
    narrow_key: false,
    country: true,
};

fn segmented_customers(project: &Project) -> usize {
    let run = common::published(&project.path("out/lake"));
    common::table(&run, "segments")
        .iter()
        .map(RecordBatch::num_rows)
        .sum()
}

#[test]
fn a_parquet_file_without_a_column_the_others_have_fails_naming_file_and_column() {
    let project = Project::copy_of_repository();
    project.write(
        "pipelines/lake.yaml",
        &pipeline("parquet", "customers/", None),
    );
    parquet_file(&project, "part-0.parquet", 0..40, ALL);
    parquet_file(
        &project,
        "part-1.parquet",
        40..80,
        Columns { key: false, ..ALL },
    );
    for command in ["check", "run"] {
        let run = project.segflow(&[command, "pipelines/lake.yaml"]);
        run.assert_exit(4);
        assert!(
            run.stderr.contains("source `customers`")
                && run
                    .stderr
                    .contains("part-1.parquet: has no column `customer_id`")
                && run.stderr.contains("part-0.parquet has"),
            "{command}: {}",
            run.stderr
        );
    }
    assert!(!project.path("out/lake/_LATEST.json").exists());
}

#[test]
fn a_declared_nullable_column_a_file_lacks_is_read_as_null_and_said_so() {
    let project = Project::copy_of_repository();
    project.write(
        "pipelines/lake.yaml",
        &pipeline("parquet", "customers/", Some(DECLARED)),
    );
    parquet_file(&project, "part-0.parquet", 0..40, ALL);
    parquet_file(
        &project,
        "part-1.parquet",
        40..80,
        Columns {
            country: false,
            ..ALL
        },
    );
    let run = project.segflow(&["run", "pipelines/lake.yaml", "--report-json", "r.json"]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("note: file://")
            && run
                .stdout
                .contains("part-1.parquet has no column `country`: read as null there"),
        "{}",
        run.stdout
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("r.json")).unwrap()).unwrap();
    let notes = report["sources"][0]["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(segmented_customers(&project), 80);

    // Declared `nullable: false`, the same file fails the run instead.
    project.write(
        "pipelines/lake.yaml",
        &pipeline("parquet", "customers/", Some(&country_required())),
    );
    let run = project.segflow(&["run", "pipelines/lake.yaml"]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains(
            "part-1.parquet: has no column `country`, which is declared `nullable: false`"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn files_whose_integer_widths_differ_are_read_at_the_wider_width() {
    let project = Project::copy_of_repository();
    project.write(
        "pipelines/lake.yaml",
        &pipeline("parquet", "customers/", None),
    );
    parquet_file(&project, "part-0.parquet", 0..40, ALL);
    parquet_file(
        &project,
        "part-1.parquet",
        40..80,
        Columns {
            narrow_key: true,
            ..ALL
        },
    );
    project
        .segflow(&["run", "pipelines/lake.yaml"])
        .assert_exit(0);
    assert_eq!(segmented_customers(&project), 80);
}

#[test]
fn a_corrupt_parquet_file_fails_naming_the_source_and_the_file() {
    let project = Project::copy_of_repository();
    for schema in [None, Some(DECLARED)] {
        project.write(
            "pipelines/lake.yaml",
            &pipeline("parquet", "customers/", schema),
        );
        parquet_file(&project, "part-0.parquet", 0..40, ALL);
        parquet_file(&project, "part-1.parquet", 40..80, ALL);
        // Cut short, as an interrupted copy leaves it.
        let path = project.path("data/customers/part-1.parquet");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let run = project.segflow(&["run", "pipelines/lake.yaml"]);
        run.assert_exit(4);
        assert!(
            run.stderr.contains("source `customers`")
                && run
                    .stderr
                    .contains("part-1.parquet: not a readable Parquet file"),
            "schema {schema:?}: {}",
            run.stderr
        );
    }
}

/// Sixty customers as NDJSON, with what a real export has wrong at lines 11, 21 and 31.
fn ndjson_lines() -> String {
    let mut lines: Vec<String> = (0..60)
        .map(|id| {
            format!(
                r#"{{"customer_id": {id}, "x": {}, "country": "United Kingdom"}}"#,
                if id % 2 == 0 { 1.0 } else { 100.0 }
            )
        })
        .collect();
    lines[10] = r#"{"customer_id": 10, "x": "n/a", "country": "France"}"#.to_string();
    lines[20] = r#"{"customer_id": 20, "x": 3.0, "country": "#.to_string();
    lines[30] = r#"{"customer_id": null, "x": 3.0, "country": "Spain"}"#.to_string();
    lines.join("\n") + "\n"
}

#[test]
fn an_ndjson_line_that_does_not_fit_fails_naming_file_line_and_column() {
    let project = Project::copy_of_repository();
    project.write("data/customers.json", &ndjson_lines());
    project.write(
        "pipelines/lake.yaml",
        &pipeline("ndjson", "customers.json", Some(DECLARED)),
    );
    let run = project.segflow(&["run", "pipelines/lake.yaml"]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("source `customers`")
            && run.stderr.contains("customers.json line 11: ")
            && run.stderr.contains("field 'x'")
            && run.stderr.contains("on_error: quarantine"),
        "{}",
        run.stderr
    );

    // Inferred, the same file fails the same way in `check` and in `run`: the line that is
    // not JSON, named.
    project.write(
        "pipelines/lake.yaml",
        &pipeline("ndjson", "customers.json", None),
    );
    for command in ["check", "run"] {
        let run = project.segflow(&[command, "pipelines/lake.yaml"]);
        run.assert_exit(4);
        assert!(
            run.stderr
                .contains("customers.json line 21: not a JSON value"),
            "{command}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_declared_non_nullable_column_absent_from_every_ndjson_line_fails() {
    let project = Project::copy_of_repository();
    let lines: String = (0..40)
        .map(|id| format!("{{\"customer_id\": {id}, \"x\": {}}}\n", id % 2))
        .collect();
    project.write("data/customers.json", &lines);
    project.write(
        "pipelines/lake.yaml",
        &pipeline("ndjson", "customers.json", Some(&country_required())),
    );
    let run = project.segflow(&["run", "pipelines/lake.yaml"]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains(
            "customers.json line 1: country: null or absent, but the column is not nullable"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn a_quarantining_ndjson_source_sets_bad_lines_aside_with_their_reasons() {
    let project = Project::copy_of_repository();
    project.write("data/customers.json", &ndjson_lines());
    project.write(
        "pipelines/lake.yaml",
        &pipeline("ndjson", "customers.json", Some(DECLARED)).replace(
            "    format: ndjson\n",
            "    format: ndjson\n    on_error: quarantine\n",
        ),
    );
    let run = project.segflow(&["run", "pipelines/lake.yaml"]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("60 rows read") && run.stdout.contains("3 quarantined"),
        "{}",
        run.stdout
    );
    assert_eq!(segmented_customers(&project), 57);
    let rejects = common::table(
        &common::published(&project.path("out/lake")),
        "rejects/customers",
    );
    let rows: Vec<String> = common::sorted_rows(&rejects)
        .into_iter()
        .filter(|row| row.starts_with("| customers |"))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let text = rows.join("\n");
    for expected in [
        "| 11   | whilst decoding field 'x': failed to parse \"n/a\" as Float64",
        "| 21   | Truncated record",
        "| 31   |",
        "customer_id: null or absent, but the column is not nullable",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
}

#[test]
fn a_bad_row_of_a_source_the_segment_stage_reads_is_the_source_s_fault() {
    let project = Project::copy_of_repository();
    let mut csv = String::from("customer_id,x,country\n");
    for id in 0..40 {
        csv.push_str(&format!("{id},{},United Kingdom\n", id % 2));
    }
    csv.push_str("40,n/a,France\n");
    project.write("data/customers.csv", &csv);
    project.write(
        "pipelines/lake.yaml",
        &pipeline("csv", "customers.csv", Some(DECLARED)),
    );
    let run = project.segflow(&["run", "pipelines/lake.yaml"]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("source `customers`")
            && run
                .stderr
                .contains("customers.csv line 42: x: `n/a` is not a valid float64")
            && !run.stderr.contains("segment:"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_gzip_file_cut_short_fails_naming_the_source_and_the_file() {
    use std::io::Write;
    let project = Project::copy_of_repository();
    let mut csv = String::from("customer_id,x,country\n");
    for id in 0..20_000 {
        csv.push_str(&format!("{id},{},United Kingdom\n", id % 2));
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(csv.as_bytes()).unwrap();
    let gzip = encoder.finish().unwrap();
    let path = project.path("data/customers.csv.gz");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &gzip[..gzip.len() / 2]).unwrap();
    for schema in [None, Some(DECLARED)] {
        project.write(
            "pipelines/lake.yaml",
            &pipeline("csv", "customers.csv.gz", schema),
        );
        let run = project.segflow(&["run", "pipelines/lake.yaml"]);
        run.assert_exit(4);
        assert!(
            run.stderr.contains("source `customers`")
                && run
                    .stderr
                    .contains("customers.csv.gz: not a readable gzip file"),
            "schema {schema:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_corrupt_parquet_page_fails_naming_the_source_and_the_file() {
    let project = Project::copy_of_repository();
    project.write(
        "pipelines/lake.yaml",
        &pipeline("parquet", "customers/", None),
    );
    parquet_file(&project, "part-0.parquet", 0..40, ALL);
    // A page's bytes overwritten, its footer intact: the file opens, its data does not
    // decode.
    let ids = 0..4000;
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Int64, false),
            Field::new("x", DataType::Float64, false),
            Field::new("country", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from_iter_values(ids.clone())),
            Arc::new(Float64Array::from_iter_values(
                ids.clone().map(|id| (id % 2) as f64),
            )),
            Arc::new(StringArray::from_iter_values(ids.map(|_| "United Kingdom"))),
        ],
    )
    .unwrap();
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes[200..1200].fill(0xAB);
    std::fs::write(project.path("data/customers/part-1.parquet"), bytes).unwrap();
    let run = project.segflow(&["run", "pipelines/lake.yaml"]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains("source `customers`")
            && run.stderr.contains("part-1.parquet: corrupt Parquet data"),
        "{}",
        run.stderr
    );
}
