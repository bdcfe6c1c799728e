//! The benchmark's pipeline (bench/customer_segments_parquet.yaml) must do the example's
//! work: on the same lines, written as Parquet instead of CSV, it finds the same customers,
//! the same features and the same segments.

mod common;

use std::collections::BTreeMap;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use common::Project;

/// customer id -> (segment id, total spend) of a published run.
fn segments_of(project: &Project, output: &str) -> BTreeMap<i64, (i32, String)> {
    let folder = common::published(&project.path(output));
    let mut segments = BTreeMap::new();
    for batch in common::table(&folder, "segments") {
        let column = |name: &str| batch.column_by_name(name).unwrap().clone();
        let (ids, segment, spend) = (
            column("customer_id"),
            column("segment_id"),
            column("total_spend"),
        );
        for row in 0..batch.num_rows() {
            segments.insert(
                ids.as_primitive::<Int64Type>().value(row),
                (
                    segment.as_primitive::<Int32Type>().value(row),
                    format!("{:.2}", spend.as_primitive::<Float64Type>().value(row)),
                ),
            );
        }
    }
    segments
}

#[test]
fn the_bench_pipeline_segments_a_parquet_export_as_the_example_does_its_csv() {
    let project = common::bench_project();
    let pipeline = common::BENCH_PIPELINE;
    project
        .segflow(&[
            "run",
            "pipelines/customer_segments.yaml",
            "--var",
            "output=file://../csv",
        ])
        .assert_exit(0);
    let run = project.segflow(&[
        "run",
        pipeline,
        "--var",
        "transactions=lines.parquet",
        "--var",
        "output=file://../parquet",
    ]);
    run.assert_exit(0);
    assert!(run.stdout.contains("date_parses"), "{}", run.stdout);

    let from_csv = segments_of(&project, "csv/customer_segments");
    assert_eq!(from_csv.len(), 1310);
    assert_eq!(segments_of(&project, "parquet/customer_segments"), from_csv);
}
