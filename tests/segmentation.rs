//! The segment stage on data whose answer is known: k chosen from a range finds the number
//! of clusters the data was made with, by each metric; and a run does not depend on how
//! many threads the machine gives it.

mod common;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use common::Project;

/// `centers` blobs of `per_blob` customers each, tight around far-apart centers; the
/// jitter is a fixed pattern so the file is the same on every run.
fn blobs_csv(centers: &[(f64, f64)], per_blob: usize) -> String {
    let mut csv = String::from("customer_id,x,y\n");
    let mut id = 0;
    for (cx, cy) in centers {
        for i in 0..per_blob {
            let dx = ((i * 37) % 11) as f64 / 10.0 - 0.5;
            let dy = ((i * 53) % 13) as f64 / 12.0 - 0.5;
            csv.push_str(&format!("{id},{},{}\n", cx + dx, cy + dy));
            id += 1;
        }
    }
    csv
}

fn pipeline(k: &str) -> String {
    format!(
        r#"name: blobs
stores:
  data: {{ url: "file://../data" }}
  out: {{ url: "file://../out" }}
sources:
  - name: customers
    store: data
    path: blobs.csv
    format: csv
    schema:
      - {{ name: customer_id, type: int64 }}
      - {{ name: x, type: float64 }}
      - {{ name: y, type: float64 }}
segment:
  input: customers
  key: customer_id
  features: [x, y]
  k: {k}
  seed: 3
  restarts: 2
  output: {{ store: out, path: blobs }}
"#
    )
}

#[test]
fn a_range_of_k_finds_the_clusters_the_data_has_by_every_metric() {
    let project = Project::copy_of_repository();
    let centers = [(0.0, 0.0), (20.0, 0.0), (0.0, 20.0), (20.0, 20.0)];
    project.write("data/blobs.csv", &blobs_csv(&centers, 60));
    for metric in ["silhouette", "calinski_harabasz", "davies_bouldin"] {
        project.write(
            "pipelines/blobs.yaml",
            &pipeline(&format!("{{ min: 2, max: 7, select_by: {metric} }}")),
        );
        let run = project.segflow(&["run", "pipelines/blobs.yaml", "--run-id", metric]);
        run.assert_exit(0);
        assert!(
            run.stdout.contains("k=4 chosen: ") && run.stdout.contains(metric),
            "{}",
            run.stdout
        );
        let table = common::table(
            &common::published_run(&project.path("out/blobs"), metric),
            "k_selection",
        );
        let batch = &table[0];
        let ks: Vec<i32> = batch
            .column_by_name("k")
            .unwrap()
            .as_primitive::<Int32Type>()
            .values()
            .to_vec();
        assert_eq!(ks, [2, 3, 4, 5, 6, 7]);
        let chosen = batch.column_by_name("chosen").unwrap().as_boolean();
        let picked: Vec<i32> = (0..chosen.len())
            .filter(|&i| chosen.value(i))
            .map(|i| ks[i])
            .collect();
        assert_eq!(picked, [4], "{metric}");
        // The elbow: inertia falls with every k, and most sharply up to 4.
        let inertia = batch
            .column_by_name("inertia")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert!(inertia.values().windows(2).all(|w| w[1] <= w[0]));
        assert!(inertia.value(1) - inertia.value(2) > 10.0 * (inertia.value(2) - inertia.value(3)));

        let profile = common::table(
            &common::published_run(&project.path("out/blobs"), metric),
            "profile",
        );
        let sizes: Vec<i64> = profile[0]
            .column_by_name("customers")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec();
        assert_eq!(sizes, [60, 60, 60, 60]);
    }
}

#[test]
fn segments_do_not_depend_on_the_number_of_threads() {
    let project = Project::copy_of_repository();
    let mut outputs: Vec<Vec<RecordBatch>> = Vec::new();
    for threads in ["1", "2"] {
        project
            .segflow_with_env(
                &[
                    "run",
                    "pipelines/customer_segments.yaml",
                    "--run-id",
                    threads,
                ],
                &[("RAYON_NUM_THREADS", threads)],
            )
            .assert_exit(0);
        outputs.push(common::without_run_columns(&common::table(
            &common::published_run(&project.path("out/customer_segments"), threads),
            "segments",
        )));
    }
    assert_eq!(outputs[0], outputs[1]);
    let centroids = |threads: &str| {
        common::without_run_columns(&common::table(
            &common::published_run(&project.path("out/customer_segments"), threads),
            "centroids",
        ))
    };
    assert_eq!(centroids("1"), centroids("2"));
}

/// Customers `ids` placed around `center` with a small fixed jitter.
fn around(ids: std::ops::Range<usize>, center: (f64, f64)) -> Vec<(usize, f64, f64)> {
    ids.map(|id| {
        let dx = ((id * 37) % 11) as f64 / 10.0 - 0.5;
        let dy = ((id * 53) % 13) as f64 / 12.0 - 0.5;
        (id, center.0 + dx, center.1 + dy)
    })
    .collect()
}

fn csv_of(rows: &[(usize, f64, f64)]) -> String {
    let mut csv = String::from("customer_id,x,y\n");
    for (id, x, y) in rows {
        csv.push_str(&format!("{id},{x},{y}\n"));
    }
    csv
}

/// customer_id -> segment_id of a published run.
fn assignments(project: &Project, run: &str) -> std::collections::BTreeMap<i64, i32> {
    let batches = common::table(
        &common::published_run(&project.path("out/blobs"), run),
        "segments",
    );
    batches
        .iter()
        .flat_map(|b| {
            let keys = b
                .column_by_name("customer_id")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone();
            let ids = b
                .column_by_name("segment_id")
                .unwrap()
                .as_primitive::<Int32Type>()
                .clone();
            (0..b.num_rows())
                .map(move |i| (keys.value(i), ids.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_warm_start_keeps_segment_ids_and_counts_who_moved() {
    let project = Project::copy_of_repository();
    let (a, b, c, d) = ((0.0, 0.0), (20.0, 0.0), (0.0, 20.0), (20.0, 20.0));
    // Sizes 80, 70, 60, 50: segment ids 0, 1, 2, 3 by size.
    let mut first = around(0..80, a);
    first.extend(around(100..170, b));
    first.extend(around(200..260, c));
    first.extend(around(300..350, d));
    project.write("data/blobs.csv", &csv_of(&first));
    let yaml = pipeline("4").replace("  seed: 3\n", "  seed: 3\n  warm_start: previous\n");
    project.write("pipelines/blobs.yaml", &yaml);
    let run = project.segflow(&["run", "pipelines/blobs.yaml", "--run-id", "week-1"]);
    run.assert_exit(0);
    assert!(
        !run.stdout.contains("warm start"),
        "nothing to start from yet: {}",
        run.stdout
    );
    let before = assignments(&project, "week-1");
    let id_of = |customer: i64| before[&customer];
    assert_eq!([id_of(0), id_of(100), id_of(200), id_of(300)], [0, 1, 2, 3]);

    // A week later: 10 of A's customers are gone, 5 of B's now look like C's, 40 new
    // customers join D (now the largest, which alone would make it segment 0), and the
    // file lists everyone in another order.
    let mut second: Vec<(usize, f64, f64)> = around(10..80, a);
    second.extend(around(100..165, b));
    second.extend(around(165..170, c));
    second.extend(around(200..260, c));
    second.extend(around(300..390, d));
    second.reverse();
    second.rotate_left(37);
    project.write("data/blobs.csv", &csv_of(&second));
    let yaml = yaml.replace("  seed: 3\n", "  seed: 99\n");
    project.write("pipelines/blobs.yaml", &yaml);
    let run = project.segflow(&["run", "pipelines/blobs.yaml", "--run-id", "week-2"]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("warm start from run week-1"),
        "{}",
        run.stdout
    );
    let after = assignments(&project, "week-2");
    for (customer, id) in &after {
        let expected = match customer {
            165..170 => 2,
            300..390 => 3,
            _ => before[customer],
        };
        assert_eq!(*id, expected, "customer {customer}");
    }

    let migration = common::table(
        &common::published_run(&project.path("out/blobs"), "week-2"),
        "migration",
    );
    let batch = &migration[0];
    let ids = |name: &str| -> Vec<Option<i32>> {
        batch
            .column_by_name(name)
            .unwrap()
            .as_primitive::<Int32Type>()
            .iter()
            .collect()
    };
    let counts: Vec<i64> = batch
        .column_by_name("customers")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>()
        .values()
        .to_vec();
    let rows: Vec<(Option<i32>, Option<i32>, i64)> = ids("previous_segment_id")
        .into_iter()
        .zip(ids("segment_id"))
        .zip(counts)
        .map(|((p, s), n)| (p, s, n))
        .collect();
    assert_eq!(
        rows,
        [
            (None, Some(3), 40),
            (Some(0), None, 10),
            (Some(0), Some(0), 70),
            (Some(1), Some(1), 65),
            (Some(1), Some(2), 5),
            (Some(2), Some(2), 60),
            (Some(3), Some(3), 50),
        ]
    );
    let names = batch
        .column_by_name("previous_name")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(names.value(1), "segment 0");

    // The same customers again, shuffled otherwise: every id is the same as last week's.
    second.rotate_left(101);
    second.swap(0, 200);
    project.write("data/blobs.csv", &csv_of(&second));
    project
        .segflow(&["run", "pipelines/blobs.yaml", "--run-id", "week-3"])
        .assert_exit(0);
    assert_eq!(assignments(&project, "week-3"), after);

    // From a model file rather than a run: the same ids, and no migration to count.
    let week_1 = common::published_run(&project.path("out/blobs"), "week-1");
    let model = week_1
        .join("model.json")
        .strip_prefix(project.path("out"))
        .unwrap()
        .display()
        .to_string();
    project.write(
        "pipelines/blobs.yaml",
        &yaml.replace(
            "  warm_start: previous\n",
            &format!("  warm_start: {{ model: {{ store: out, path: {model} }} }}\n"),
        ),
    );
    let run = project.segflow(&["run", "pipelines/blobs.yaml", "--run-id", "week-4"]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("warm start from run model file://"),
        "{}",
        run.stdout
    );
    assert_eq!(assignments(&project, "week-4"), after);
    assert!(
        common::table_files(
            &common::published_run(&project.path("out/blobs"), "week-4"),
            "migration"
        )
        .is_empty()
    );
}

#[test]
fn customers_with_missing_features_fail_the_run_or_are_set_aside() {
    let project = Project::copy_of_repository();
    let mut rows = around(0..30, (0.0, 0.0));
    rows.extend(around(30..60, (20.0, 20.0)));
    let mut csv = csv_of(&rows);
    csv.push_str("60,1.0,\n61,,\n");
    project.write("data/blobs.csv", &csv);
    project.write("pipelines/blobs.yaml", &pipeline("2"));
    let strict = project.segflow(&["run", "pipelines/blobs.yaml"]);
    strict.assert_exit(4);
    assert!(
        strict
            .stderr
            .contains("feature `x` has 1 null, NaN or infinite value"),
        "{}",
        strict.stderr
    );

    project.write(
        "pipelines/blobs.yaml",
        &pipeline("2").replace(
            "  seed: 3\n",
            "  seed: 3\n  on_invalid_features: quarantine\n",
        ),
    );
    let run = project.segflow(&["run", "pipelines/blobs.yaml", "--run-id", "kept"]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("2 customers set aside"),
        "{}",
        run.stdout
    );
    let rejects = common::table(
        &common::published_run(&project.path("out/blobs"), "kept"),
        "rejects/segment",
    );
    let reasons: Vec<String> = rejects[0]
        .column_by_name("reason")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|r| r.unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["y is null", "x is null; y is null"]);
    assert_eq!(assignments(&project, "kept").len(), 60);
    // The report counts them: each reason once, and each feature's nulls.
    let page = std::fs::read_to_string(
        common::published_run(&project.path("out/blobs"), "kept").join("report.html"),
    )
    .unwrap();
    for row in [
        "<td>rejects/segment</td><td>x is null; y is null</td><td class=\"n\">1</td>",
        "<td>rejects/segment</td><td>y is null</td><td class=\"n\">1</td>",
    ] {
        assert!(page.contains(row), "{row}");
    }
    assert!(
        page.contains(
            "<td>y</td><td>–</td><td>–</td><td class=\"n\">62</td><td class=\"n\">2</td>"
        ),
        "y: 62 customers, 2 nulls"
    );
}

#[test]
fn a_sampled_fit_streams_every_customer_to_its_segment() {
    let project = Project::copy_of_repository();
    let centers = [(0.0, 0.0), (20.0, 0.0), (0.0, 20.0), (20.0, 20.0)];
    let mut csv = blobs_csv(&centers, 60);
    csv.push_str("240,1.0,\n");
    project.write("data/blobs.csv", &csv);
    let quarantine = "  seed: 3\n  on_invalid_features: quarantine\n";
    project.write(
        "pipelines/blobs.yaml",
        &pipeline("4").replace("  seed: 3\n", quarantine),
    );
    project
        .segflow(&["run", "pipelines/blobs.yaml", "--run-id", "all"])
        .assert_exit(0);
    project.write(
        "pipelines/blobs.yaml",
        &pipeline("4").replace("  seed: 3\n", &format!("{quarantine}  fit_sample: 40\n")),
    );
    let run = project.segflow(&["run", "pipelines/blobs.yaml", "--run-id", "sampled"]);
    run.assert_exit(0);
    assert!(
        run.stdout
            .contains("fitted on a seeded sample of 40 customers"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("1 customers set aside"),
        "{}",
        run.stdout
    );

    // Every customer is in the output once, in the same group as with a full fit (ids may
    // differ: they go by size, and the sample's sizes are not the whole input's).
    let (all, sampled) = (
        assignments(&project, "all"),
        assignments(&project, "sampled"),
    );
    assert_eq!(sampled.len(), 240);
    let mut id_map = std::collections::BTreeMap::new();
    for (customer, id) in &all {
        let mapped = *id_map.entry(*id).or_insert(sampled[customer]);
        assert_eq!(sampled[customer], mapped, "customer {customer}");
    }
    assert_eq!(id_map.len(), 4);

    let profile = common::table(
        &common::published_run(&project.path("out/blobs"), "sampled"),
        "profile",
    );
    let sizes: Vec<i64> = profile[0]
        .column_by_name("customers")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>()
        .values()
        .to_vec();
    assert_eq!(
        sizes,
        [60, 60, 60, 60],
        "profile counts every customer, not the sample"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            common::published_run(&project.path("out/blobs"), "sampled").join("_MANIFEST.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let segments = manifest["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "segments")
        .unwrap();
    assert_eq!(segments["rows"], 240);
}

#[test]
fn stability_checks_judge_the_segments_against_the_previous_run() {
    let project = Project::copy_of_repository();
    let (a, b, c, d) = ((0.0, 0.0), (20.0, 0.0), (0.0, 20.0), (20.0, 20.0));
    let mut first = around(0..80, a);
    first.extend(around(100..170, b));
    first.extend(around(200..260, c));
    first.extend(around(300..350, d));
    project.write("data/blobs.csv", &csv_of(&first));
    let with_checks = |moved: &str| {
        pipeline("4").replace(
            "  seed: 3\n",
            &format!(
                "  seed: 3\n  warm_start: previous\n  checks:\n    \
                 - {{ type: max_moved_share, value: \"{moved}\" }}\n    \
                 - {{ type: max_size_psi, value: 0.03, severity: warn }}\n    \
                 - {{ type: max_centroid_shift, value: 1.0 }}\n"
            ),
        )
    };
    project.write("pipelines/blobs.yaml", &with_checks("5%"));
    let run = project.segflow(&["run", "pipelines/blobs.yaml", "--run-id", "week-1"]);
    run.assert_exit(0);
    assert_eq!(
        run.stdout
            .matches("no baseline: no earlier published run")
            .count(),
        3,
        "{}",
        run.stdout
    );

    // 20 of A's 80 customers now buy like B's: 20 of the 260 returning customers moved.
    let mut second = around(20..80, a);
    second.extend(around(0..20, b));
    second.extend(around(100..170, b));
    second.extend(around(200..260, c));
    second.extend(around(300..350, d));
    project.write("data/blobs.csv", &csv_of(&second));
    let run = project.segflow(&["run", "pipelines/blobs.yaml", "--run-id", "week-2"]);
    run.assert_exit(4);
    assert!(
        run.stderr.contains(
            "segment check `max_moved_share` (max_moved_share): 7.7% (20 of 260) of the customers also in run week-1 changed segment; at most 5.0% allowed"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !project.path("out/blobs/run_id=week-2").exists(),
        "nothing published"
    );

    // Allowed to move more, the run publishes; the share change is a warning:
    // PSI = (60-80)/260 ln(60/80) + (90-70)/260 ln(90/70) = 0.0415.
    project.write("pipelines/blobs.yaml", &with_checks("10%"));
    let run = project.segflow(&["run", "pipelines/blobs.yaml", "--run-id", "week-2"]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains(
            "check max_size_psi (warn): warn  population stability index of segment shares against run week-1: 0.0415; at most 0.03 allowed"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("check max_centroid_shift (error): pass"),
        "{}",
        run.stdout
    );
}

/// Customer id and segment id of every customer of a published run.
fn assignment_of(project: &Project, run_id: &str) -> Vec<(i64, i32)> {
    let segments = common::table(
        &common::published_run(&project.path("out/customer_segments"), run_id),
        "segments",
    );
    let mut pairs: Vec<(i64, i32)> = segments
        .iter()
        .flat_map(|batch| {
            let ids = batch
                .column_by_name("customer_id")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone();
            let segments = batch
                .column_by_name("segment_id")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int32Type>()
                .clone();
            (0..batch.num_rows())
                .map(move |row| (ids.value(row), segments.value(row)))
                .collect::<Vec<_>>()
        })
        .collect();
    pairs.sort_unstable();
    pairs
}

#[test]
fn a_fixed_model_assigns_without_refitting_and_reproduces_its_run() {
    let project = Project::copy_of_repository();
    let pipeline = "pipelines/customer_segments.yaml";
    project
        .segflow(&["run", pipeline, "--run-id", "monthly"])
        .assert_exit(0);
    project.replace_in(
        pipeline,
        "segment:\n  input: customer_features\n",
        "segment:\n  input: customer_features\n  model: {run: monthly}\n",
    );
    project.segflow(&["check", pipeline]).assert_exit(0);
    let daily = project.segflow(&["run", pipeline, "--run-id", "daily"]);
    daily.assert_exit(0);
    assert!(
        daily.stdout.contains(
            "assigned with the model of run monthly as it is (segment.model): not refitted"
        ),
        "{}",
        daily.stdout
    );
    // The same customers, the same model: exactly the same assignment.
    let monthly = assignment_of(&project, "monthly");
    assert_eq!(monthly.len(), 1310);
    assert_eq!(assignment_of(&project, "daily"), monthly);
    let output = project.path("out/customer_segments");
    // The centroids in model units exactly; in raw units, undone through the model file's
    // transforms, to the last bits.
    let centroids = |run_id: &str| -> Vec<String> {
        let batches = common::table(&common::published_run(&output, run_id), "centroids");
        let mut cells = Vec::new();
        for batch in &batches {
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                if ["run_id", "as_of"].contains(&field.name().as_str()) {
                    continue;
                }
                for row in 0..batch.num_rows() {
                    cells.push(
                        match column.as_primitive_opt::<arrow::datatypes::Float64Type>() {
                            Some(values) if field.name().ends_with("_scaled") => {
                                format!("{}={:?}", field.name(), values.value(row))
                            }
                            Some(values) => format!("{}={:.12e}", field.name(), values.value(row)),
                            None => format!(
                                "{}={}",
                                field.name(),
                                arrow::util::display::array_value_to_string(column, row).unwrap()
                            ),
                        },
                    );
                }
            }
        }
        cells
    };
    assert_eq!(centroids("daily"), centroids("monthly"));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::published_run(&output, "daily").join("_MANIFEST.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["segment_model"], "monthly");

    // Three months earlier, fewer customers: the model's centroids still, not a new fit.
    let earlier = project.segflow(&[
        "run",
        pipeline,
        "--run-id",
        "earlier",
        "--var",
        "as_of=2011-09-01",
    ]);
    earlier.assert_exit(0);
    assert_eq!(centroids("earlier"), centroids("monthly"));
    assert!(assignment_of(&project, "earlier").len() < 1310);

    // k must be the model's.
    project.replace_in(pipeline, "  k: 5\n", "  k: 4\n");
    let wrong_k = project.segflow(&["run", pipeline, "--run-id", "wrong"]);
    wrong_k.assert_exit(4);
    assert!(
        wrong_k
            .stderr
            .contains("the model of run `monthly` has 5 segments and `k` says 4"),
        "{}",
        wrong_k.stderr
    );
}
