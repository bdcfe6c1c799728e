//! The segment stage on data whose answer is known: k chosen from a range finds the number
//! of clusters the data was made with, by each metric; and a run does not depend on how
//! many threads the machine gives it.

mod common;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use common::{Project, read_parquet};

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
        let table =
            read_parquet(&project.path(&format!("out/blobs/run_id={metric}/k_selection.parquet")));
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

        let profile =
            read_parquet(&project.path(&format!("out/blobs/run_id={metric}/profile.parquet")));
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
        outputs.push(common::read_parquet_folder(
            &project.path(&format!("out/customer_segments/run_id={threads}/segments")),
        ));
    }
    assert_eq!(outputs[0], outputs[1]);
    let centroids = |threads: &str| {
        std::fs::read(project.path(&format!(
            "out/customer_segments/run_id={threads}/centroids.parquet"
        )))
        .unwrap()
    };
    assert_eq!(centroids("1"), centroids("2"));
}
