use super::*;

fn csv(rows: u64, seed: u64) -> String {
    let mut out = Vec::new();
    write(
        &mut out,
        OutputFormat::Csv,
        &GeneratorConfig::new(rows, seed),
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn writes_exactly_the_rows_asked_for() {
    for rows in [1, 5, 17, 5000] {
        let text = csv(rows, 1);
        assert_eq!(
            text.lines().count() as u64,
            rows + 1,
            "header + {rows} rows"
        );
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    assert_eq!(csv(3000, 9), csv(3000, 9));
    assert_ne!(csv(3000, 9), csv(3000, 10));
}

#[test]
fn is_dirty_the_way_real_exports_are() {
    let text = csv(30_000, 42);
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|record| record.unwrap().iter().map(str::to_string).collect())
        .collect();
    let guests = rows.iter().filter(|r| r[6].is_empty()).count();
    let cancellations = rows.iter().filter(|r| r[0].starts_with('C')).count();
    let zero_prices = rows.iter().filter(|r| r[5] == "0.0" || r[5] == "0").count();
    let negative = rows.iter().filter(|r| r[3].starts_with('-')).count();
    let bad_dates = rows
        .iter()
        .filter(|r| chrono::NaiveDateTime::parse_from_str(&r[4], "%Y-%m-%d %H:%M:%S").is_err())
        .count();
    let mut seen = std::collections::HashSet::new();
    let duplicates = text
        .lines()
        .skip(1)
        .filter(|line| !seen.insert(*line))
        .count();
    let quoted = text.lines().filter(|line| line.contains('"')).count();
    for (what, count) in [
        ("guest", guests),
        ("cancellation", cancellations),
        ("zero price", zero_prices),
        ("negative quantity", negative),
        ("bad date", bad_dates),
        ("duplicate", duplicates),
        ("quoted", quoted),
    ] {
        assert!(count > 10, "{what} rows: {count}");
        assert!(count < rows.len() / 5, "{what} rows: {count}");
    }
}

#[test]
fn scripted_customers_come_first() {
    let text = csv(20, 1);
    let second = text.lines().nth(1).unwrap();
    assert!(second.starts_with("500001,85123A,"), "{second}");
    assert!(text.contains("\"SET OF 3 CAKE TINS, PANTRY DESIGN\""));
}

#[test]
fn parquet_holds_the_same_rows() {
    let mut out = Vec::new();
    let summary = write(
        &mut out,
        OutputFormat::Parquet,
        &GeneratorConfig::new(2500, 3),
    )
    .unwrap();
    assert_eq!(summary.rows, 2500);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(out),
    )
    .unwrap()
    .build()
    .unwrap();
    let rows: usize = reader.map(|batch| batch.unwrap().num_rows()).sum();
    assert_eq!(rows, 2500);
}

#[test]
fn shipped_fixture_is_what_the_generator_writes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/retail/transactions.csv");
    let shipped = std::fs::read_to_string(&path).unwrap();
    assert!(
        shipped == csv(30_000, 42),
        "{} differs from the generator's output; regenerate it with\n  segflow generate fixtures/retail/transactions.csv --rows 30000 --seed 42",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_to_a_store_the_same_rows_as_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn object_store::ObjectStore> = std::sync::Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
    );
    let mut config = GeneratorConfig::new(20_000, 7);
    config.batch_rows = 1000;
    let summary = write_to_store(
        store,
        object_store::path::Path::from("deep/er/lines.csv"),
        OutputFormat::Csv,
        &config,
    )
    .await
    .unwrap();
    assert_eq!(summary.rows, 20_000);
    let mut expected = Vec::new();
    write(&mut expected, OutputFormat::Csv, &config).unwrap();
    let written = std::fs::read(dir.path().join("deep/er/lines.csv")).unwrap();
    assert!(written == expected, "the same bytes, one header");
}
