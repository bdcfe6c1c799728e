//! The example pipeline on Apache DataFusion Ballista: a scheduler and executor started in
//! the segflow process (`--engine ballista-standalone`) give the same published outputs as
//! the local engine, table by table and row by row, with the sources and outputs on the
//! local disk or on a real S3-compatible server (SeaweedFS on 127.0.0.1). An unreachable
//! scheduler is a runtime error naming its address.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use common::seaweedfs::SeaweedFs;
use common::{Project, sorted_rows};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const PIPELINE: &str = "pipelines/customer_segments.yaml";
const RUN: &str = "run_id=2011-12-10";

/// The key prefix (ending in `/`) of the example run's published version in the bucket
/// `lake`, from its `_SUCCESS`.
/// A published run: its files by their paths relative to the output folder, and its
/// version's folder there.
struct Run<'a> {
    read: ReadFile<'a>,
    version: String,
}

/// A file's bytes by its path relative to the output folder.
type ReadFile<'a> = Box<dyn Fn(&str) -> Vec<u8> + 'a>;

impl Run<'_> {
    fn read(&self, name: &str) -> Vec<u8> {
        (self.read)(name)
    }

    fn manifest(&self) -> serde_json::Value {
        serde_json::from_slice(&self.read(&format!("{}_MANIFEST.json", self.version))).unwrap()
    }

    /// The files its manifest lists, by their paths with the attempt id as `*` (which
    /// differs from run to run): the table (empty for other files) and the path.
    fn files(&self) -> BTreeMap<String, (String, String)> {
        let attempt = self
            .version
            .split("attempt=")
            .nth(1)
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        self.manifest()["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|file| {
                let path = file["path"].as_str().unwrap().to_string();
                let table = file["table"].as_str().unwrap_or_default().to_string();
                (path.replace(&attempt, "*"), (table, path))
            })
            .collect()
    }

    /// The rows of `table`, file by file.
    fn table(&self, table: &str) -> Vec<RecordBatch> {
        self.files()
            .values()
            .filter(|(of, _)| of == table)
            .flat_map(|(_, path)| {
                ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(self.read(path)))
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(Result::unwrap)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// The run published in the version folder `version` on the local disk.
fn local_run(version: &Path) -> Run<'static> {
    let output = version.parent().unwrap().parent().unwrap().to_path_buf();
    let relative = version.strip_prefix(&output).unwrap().to_string_lossy();
    Run {
        version: format!("{relative}/"),
        read: Box::new(move |name| {
            std::fs::read(output.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
        }),
    }
}

/// The run `RUN` published in the bucket `lake` under `out/customer_segments/`.
fn bucket_run(server: &SeaweedFs) -> Run<'_> {
    let success = server.get("lake", &format!("out/customer_segments/{RUN}/_SUCCESS"));
    let commit: serde_json::Value = serde_json::from_slice(&success).unwrap();
    Run {
        version: commit["path"].as_str().unwrap().to_string(),
        read: Box::new(move |name| {
            server
                .get("lake", &format!("out/customer_segments/{name}"))
                .to_vec()
        }),
    }
}

/// The rows as text with floats to 9 significant digits, sorted: sums and distances
/// computed by another engine may differ in their last bits.
fn rounded_rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = arrow::util::display::FormatOptions::default().with_null("null");
    let mut lines = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|column| match column.as_primitive_opt::<Float64Type>() {
                    Some(floats) if floats.is_valid(row) => format!("{:.9e}", floats.value(row)),
                    _ => arrow::util::display::ArrayFormatter::try_new(column.as_ref(), &options)
                        .unwrap()
                        .value(row)
                        .to_string(),
                })
                .collect();
            lines.push(cells.join(" | "));
        }
    }
    lines.sort();
    lines
}

/// JSON with every number to 9 significant digits.
fn rounded_json(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            serde_json::Value::String(format!("{:.9e}", number.as_f64().unwrap()))
        }
        serde_json::Value::Array(items) => items.iter().map(rounded_json).collect(),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(key, value)| (key.clone(), rounded_json(value)))
            .collect(),
        other => other.clone(),
    }
}

/// Asserts that two published runs hold the same files with the same contents: Parquet
/// files the same schema and rows, other files the same JSON. The files of the tables in
/// `same_count_only` need only hold as many rows.
fn assert_same_run(local: &Run, ballista: &Run, same_count_only: &[&str]) {
    let (local_manifest, ballista_manifest) = (local.manifest(), ballista.manifest());
    assert_eq!(
        local_manifest["tables"], ballista_manifest["tables"],
        "the same tables, columns and row counts"
    );
    let (files, ballista_files) = (local.files(), ballista.files());
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ballista_files.keys().collect::<Vec<_>>()
    );
    assert!(
        files.keys().any(|file| file.starts_with("segments/")),
        "{files:?}"
    );
    for (key, (table, path)) in &files {
        let (local, ballista) = (local.read(path), ballista.read(&ballista_files[key].1));
        if path.ends_with("report.html") {
            // Times differ; the segments, their value and actions do not.
            let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
            let (local, ballista) = (text(local), text(ballista));
            assert_eq!(
                common::report_section(&local, "segments"),
                common::report_section(&ballista, "segments"),
                "{path}"
            );
            continue;
        }
        if path.ends_with("run.json") {
            let json =
                |bytes: &[u8]| -> serde_json::Value { serde_json::from_slice(bytes).unwrap() };
            let (local, ballista) = (json(&local), json(&ballista));
            assert_eq!(
                local["segment"]["sizes"], ballista["segment"]["sizes"],
                "{path}"
            );
            assert_eq!(
                local["segment"]["names"], ballista["segment"]["names"],
                "{path}"
            );
            continue;
        }
        if !path.ends_with(".parquet") {
            let json =
                |bytes: &[u8]| -> serde_json::Value { serde_json::from_slice(bytes).unwrap() };
            assert_eq!(json(&local), json(&ballista), "{path}");
            continue;
        }
        let batches = |bytes: Vec<u8>| -> Vec<RecordBatch> {
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let (local, ballista) = (batches(local), batches(ballista));
        assert_eq!(local[0].schema(), ballista[0].schema(), "{path}");
        if same_count_only.contains(&table.as_str()) {
            assert_eq!(
                sorted_rows(&local).len(),
                sorted_rows(&ballista).len(),
                "{path}"
            );
        } else {
            assert_eq!(sorted_rows(&local), sorted_rows(&ballista), "{path}");
        }
    }
}

#[test]
fn example_pipeline_on_standalone_ballista_publishes_what_the_local_engine_does() {
    let project = Project::copy_of_repository();
    project
        .segflow(&[
            "run",
            PIPELINE,
            "--var",
            "output=file://../out-local",
            "--report-json",
            "report-local.json",
        ])
        .assert_exit(0);
    let run = project.segflow(&[
        "run",
        PIPELINE,
        "--var",
        "output=file://../out-ballista",
        "--engine",
        "ballista-standalone",
        "--report-json",
        "report.json",
        "--profile",
    ]);
    run.assert_exit(0);

    let local = common::published(&project.path("out-local/customer_segments"));
    let ballista = common::published(&project.path("out-ballista/customer_segments"));
    assert!(
        ballista.parent().unwrap().ends_with(RUN),
        "{}",
        ballista.display()
    );
    assert_same_run(&local_run(&local), &local_run(&ballista), &[]);
    // The segments are the ones the local engine found, customer for customer.
    let segments = |dir: &Path| sorted_rows(&common::table(dir, "segments"));
    assert_eq!(segments(&local), segments(&ballista));

    // The step results written for the executors went with the staging folder.
    assert!(
        !project
            .path("out-ballista/customer_segments/_staging")
            .exists(),
        "staging (and the step results in it) is removed after publishing"
    );
    // The run report accounts for the rows as the local run's does.
    assert_eq!(
        row_accounting(&project.path("report.json")),
        row_accounting(&project.path("report-local.json"))
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.path("report.json")).unwrap())
            .unwrap();
    let step = |name: &str| -> serde_json::Value {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|step| step["name"] == name)
            .cloned()
            .unwrap()
    };
    // --profile shows the stages the executors ran, with their operators' metrics.
    for reported in report["steps"].as_array().unwrap() {
        // A step streamed into its reader ran as part of the reader's stages.
        let profile = match reported["streamed_into"].as_str() {
            Some(reader) => step(reader)["profile"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            None => reported["profile"].as_str().unwrap_or_default().to_string(),
        };
        assert!(
            profile.contains("SuccessfulStage") && profile.contains("metrics=[output_rows="),
            "{}: {profile}",
            reported["name"]
        );
    }
    let validated = step("valid_transactions");
    assert_eq!(
        validated["rows_in"].as_u64().unwrap(),
        validated["rows_out"].as_u64().unwrap() + validated["rows_quarantined"].as_u64().unwrap()
    );
    assert!(validated["rows_quarantined"].as_u64().unwrap() > 0);
    let quarantined = common::table(&ballista, "rejects/valid_transactions");
    let rejected: usize = quarantined.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(
        rejected as u64,
        validated["rows_quarantined"].as_u64().unwrap()
    );
}

/// Past `fit_sample` customers, the model is fitted on a seeded sample pulled from the
/// cluster and every customer is assigned by a query the executors run, which write
/// `segments/` themselves.
#[test]
fn past_the_fit_sample_customers_are_assigned_on_the_cluster_as_locally() {
    let project = Project::copy_of_repository();
    // 1,310 customers in the fixture: sample 600 of them.
    let pipeline = std::fs::read_to_string(project.path(PIPELINE))
        .unwrap()
        .replace("fit_sample: 1000000\n", "fit_sample: 600\n");
    assert!(pipeline.contains("fit_sample: 600"));
    project.write("pipelines/sampled.yaml", &pipeline);
    let run = |output: &str, engine: &str| {
        project
            .segflow(&[
                "run",
                "pipelines/sampled.yaml",
                "--var",
                &format!("output=file://../{output}"),
                "--engine",
                engine,
            ])
            .assert_exit(0);
        common::published(&project.path(&format!("{output}/customer_segments")))
    };
    let local = run("out-local", "local");
    let ballista = run("out-ballista", "ballista-standalone");

    // The same model: the same sample, fitted the same way.
    assert_eq!(
        sorted_rows(&common::table(&local, "centroids")),
        sorted_rows(&common::table(&ballista, "centroids"))
    );
    // The same segment for every customer; distances, sums and inertia to 9 digits (the
    // query's ln(1 + x) and its sums may differ from Rust's in the last bits).
    let segments = |dir: &Path| rounded_rows(&common::table(dir, "segments"));
    let (local_segments, ballista_segments) = (segments(&local), segments(&ballista));
    assert_eq!(local_segments.len(), 1310, "every customer once");
    assert_eq!(local_segments, ballista_segments);
    let profile = |dir: &Path| rounded_rows(&common::table(dir, "profile"));
    assert_eq!(profile(&local), profile(&ballista));
    let model = |dir: &Path| -> serde_json::Value {
        rounded_json(
            &serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap(),
        )
    };
    assert_eq!(model(&local), model(&ballista));
    // The executors' files are published under the names segflow gives its own, with the
    // same schema (non-null key, id, distance and features).
    let manifest = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("_MANIFEST.json")).unwrap()).unwrap()
    };
    assert_eq!(manifest(&local)["tables"], manifest(&ballista)["tables"]);
    let parts = common::table_files(&ballista, "segments");
    assert!(!parts.is_empty());
    for (number, part) in parts.iter().enumerate() {
        let name = part.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(&format!("part-{number:05}-")), "{name}");
    }
}

/// The run report's row accounting, step by step and source by source.
fn row_accounting(report: &Path) -> Vec<String> {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let mut lines = Vec::new();
    for source in report["sources"].as_array().unwrap() {
        lines.push(format!(
            "source {}: read {} out {} quarantined {}",
            source["name"], source["rows_read"], source["rows_out"], source["rows_quarantined"]
        ));
    }
    for step in report["steps"].as_array().unwrap() {
        lines.push(format!(
            "step {}: in {} out {} removed {} quarantined {}",
            step["name"],
            step["rows_in"],
            step["rows_out"],
            step["rows_removed"],
            step["rows_quarantined"]
        ));
    }
    lines
}

/// A Parquet source (no quarantine): the executors read it, and the report still counts
/// the rows each step read, as the local engine's does from its scans.
#[test]
fn a_parquet_export_on_ballista_segments_and_counts_as_locally() {
    let project = common::bench_project();
    let pipeline = common::BENCH_PIPELINE;
    for (engine, output) in [("local", "local"), ("ballista-standalone", "ballista")] {
        project
            .segflow(&[
                "run",
                pipeline,
                "--var",
                "transactions=lines.parquet",
                "--var",
                &format!("output=file://../{output}"),
                "--engine",
                engine,
                "--report-json",
                &format!("{output}.json"),
            ])
            .assert_exit(0);
    }
    let accounting = row_accounting(&project.path("local.json"));
    assert!(
        accounting[0].contains("read 30000"),
        "the source's rows: {accounting:?}"
    );
    assert_eq!(accounting, row_accounting(&project.path("ballista.json")));
    let local = common::published(&project.path("local/customer_segments"));
    let ballista = common::published(&project.path("ballista/customer_segments"));
    assert_same_run(&local_run(&local), &local_run(&ballista), &[]);
}

#[test]
fn a_partial_run_on_ballista_publishes_nothing_and_leaves_no_staging() {
    let project = Project::copy_of_repository();
    let run = project.segflow(&[
        "run",
        PIPELINE,
        "--engine",
        "ballista-standalone",
        "--until",
        "valid_transactions",
    ]);
    run.assert_exit(0);
    assert!(run.stdout.contains("valid_transactions"), "{}", run.stdout);
    assert!(!project.path("out/customer_segments/_LATEST.json").exists());
    assert!(!project.path("out/customer_segments/_staging").exists());
}

#[test]
fn validation_failure_on_ballista_has_its_exit_code_and_publishes_nothing() {
    let project = Project::copy_of_repository();
    // Far more rows than the export has: the row_count check (severity error) fails.
    let pipeline = std::fs::read_to_string(project.path(PIPELINE))
        .unwrap()
        .replace("min: 1000\n", "min: 100000000\n");
    project.write("pipelines/strict.yaml", &pipeline);
    let run = project.segflow(&[
        "run",
        "pipelines/strict.yaml",
        "--engine",
        "ballista-standalone",
    ]);
    run.assert_exit(4);
    assert!(run.stderr.contains("row_count"), "{}", run.stderr);
    assert!(!project.path("out/customer_segments/_LATEST.json").exists());
    assert!(!project.path("out/customer_segments/_staging").exists());
}

#[test]
fn unreachable_scheduler_is_a_runtime_error_naming_its_address() {
    let project = Project::copy_of_repository();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let engine = format!("ballista://127.0.0.1:{port}");
    let run = project.segflow(&["run", PIPELINE, "--engine", &engine]);
    run.assert_exit(1);
    assert!(
        run.stderr
            .contains(&format!("engine {engine}: the scheduler does not answer")),
        "{}",
        run.stderr
    );
    assert!(
        !project.path("out/customer_segments").exists(),
        "nothing written"
    );
}

#[test]
fn a_store_cluster_executors_cannot_build_is_a_pipeline_error_before_anything_runs() {
    let project = Project::copy_of_repository();
    // No scheduler listens there either: the store is refused before it is asked.
    let run = project.segflow(&[
        "run",
        PIPELINE,
        "--var",
        "output=gs://bucket/out",
        "--engine",
        "ballista://127.0.0.1:9",
    ]);
    run.assert_exit(3);
    assert!(
        run.stderr.contains(
            "engine ballista://127.0.0.1:9: store `output`: Ballista's executors read `s3://`, `http(s)://` and `file://` stores, not `gs://`"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn engine_from_the_pipeline_file_is_checked_with_its_line() {
    let project = Project::copy_of_repository();
    let pipeline = std::fs::read_to_string(project.path(PIPELINE))
        .unwrap()
        .replace(
            "name: customer_segments\n",
            "name: customer_segments\nengine: ballista:/scheduler\n",
        );
    project.write("pipelines/bad_engine.yaml", &pipeline);
    let run = project.segflow(&["run", "pipelines/bad_engine.yaml"]);
    run.assert_exit(3);
    assert!(
        run.stderr.contains("bad_engine.yaml:10:1: engine:")
            && run.stderr.contains("is not an engine"),
        "{}",
        run.stderr
    );
}

#[test]
fn example_pipeline_on_ballista_reads_and_publishes_on_s3() {
    let Some(server) = SeaweedFs::start(&["lake"]) else {
        return;
    };
    let project = Project::copy_of_repository();
    let csv = std::fs::read(project.path("fixtures/retail/transactions.csv")).unwrap();
    server.upload("lake", "fixtures/retail/transactions.csv", csv);
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    let local = common::published(&project.path("out/customer_segments"));

    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = project.segflow_with_env(
        &[
            "run",
            PIPELINE,
            "--var",
            "fixtures=s3://lake/fixtures",
            "--var",
            "output=s3://lake/out",
            "--engine",
            "ballista-standalone",
        ],
        &env,
    );
    run.assert_exit(0);

    // Rejected source lines name the file they came from, which differs by design.
    assert_same_run(
        &local_run(&local),
        &bucket_run(&server),
        &["rejects/raw_transactions"],
    );
    let keys: Vec<String> = server
        .list("lake", "out/customer_segments")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert!(
        keys.iter()
            .any(|key| key.ends_with(&format!("{RUN}/_SUCCESS")))
    );
    assert!(
        keys.iter().all(|key| !key.contains("_staging")),
        "staging and the step results in it are removed: {keys:?}"
    );
}

/// A Ballista scheduler and executor set up as the `ballista-scheduler` and
/// `ballista-executor` binaries set themselves up (object stores built from the `s3.*`
/// settings of each job, none shared with segflow), in this test's process on a port of
/// their own. segflow reaches them over gRPC like any cluster. Returns the scheduler's port;
/// the cluster lives as long as the returned runtime.
fn start_cluster() -> (u16, tokio::runtime::Runtime) {
    use ballista_core::object_store::{
        runtime_env_with_s3_support, session_config_with_s3_support, session_state_with_s3_support,
    };
    use ballista_core::serde::BallistaCodec;
    use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
    use std::sync::Arc;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = runtime.block_on(async {
        let address = ballista_scheduler::standalone::new_standalone_scheduler_with_builder(
            Arc::new(session_state_with_s3_support),
            Arc::new(session_config_with_s3_support),
            BallistaCodec::default(),
        )
        .await
        .unwrap();
        let url = format!("http://localhost:{}", address.port());
        let scheduler = loop {
            match SchedulerGrpcClient::connect(url.clone()).await {
                Ok(client) => break client,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        };
        let state = session_state_with_s3_support(session_config_with_s3_support()).unwrap();
        ballista_executor::new_standalone_executor_from_builder(
            scheduler,
            2,
            Arc::new(session_config_with_s3_support),
            Arc::new(runtime_env_with_s3_support),
            BallistaCodec::default(),
            (&state).into(),
        )
        .await
        .unwrap();
        address.port()
    });
    (port, runtime)
}

/// The example with its sources and outputs on S3, on a cluster whose executor builds its
/// own S3 store: only the settings segflow sends with each job tell it where and how.
#[test]
fn a_cluster_executor_reads_and_writes_s3_with_the_settings_segflow_sends() {
    let Some(server) = SeaweedFs::start(&["lake"]) else {
        return;
    };
    let project = Project::copy_of_repository();
    let csv = std::fs::read(project.path("fixtures/retail/transactions.csv")).unwrap();
    server.upload("lake", "fixtures/retail/transactions.csv", csv);
    // Past the fit sample, so the executor also assigns and writes the segments.
    let pipeline = std::fs::read_to_string(project.path(PIPELINE))
        .unwrap()
        .replace("fit_sample: 1000000\n", "fit_sample: 600\n");
    project.write("pipelines/sampled.yaml", &pipeline);
    project
        .segflow(&["run", "pipelines/sampled.yaml"])
        .assert_exit(0);
    let local = common::published(&project.path("out/customer_segments"));

    let (port, cluster) = start_cluster();
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let engine = format!("ballista://localhost:{port}");
    let run = project.segflow_with_env(
        &[
            "run",
            "pipelines/sampled.yaml",
            "--var",
            "fixtures=s3://lake/fixtures",
            "--var",
            "output=s3://lake/out",
            "--engine",
            &engine,
        ],
        &env,
    );
    drop(cluster);
    run.assert_exit(0);

    let local_segments = rounded_rows(&local_run(&local).table("segments"));
    assert_eq!(local_segments.len(), 1310);
    assert_eq!(
        local_segments,
        rounded_rows(&bucket_run(&server).table("segments")),
        "the same segment for every customer"
    );
    let keys: Vec<String> = server
        .list("lake", "out/customer_segments")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert!(keys.iter().all(|key| !key.contains("_staging")), "{keys:?}");
}

#[test]
fn buckets_asked_of_a_cluster_run_whole_and_publish_what_a_bucketed_local_run_does() {
    let project = Project::copy_of_repository();
    let run = |engine: &str, name: &str| {
        let output = format!("output=file://../{name}");
        let report = format!("{name}.json");
        project
            .segflow(&[
                "run",
                PIPELINE,
                "--buckets",
                "4",
                "--engine",
                engine,
                "--var",
                &output,
                "--report-json",
                &report,
            ])
            .assert_exit(0);
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(project.path(&report)).unwrap()).unwrap();
        report
    };
    let local = run("local", "local");
    let cluster = run("ballista-standalone", "cluster");
    assert_eq!(local["buckets"]["count"], 4);
    // The cluster's tasks split the work; its steps read whole tables.
    assert!(cluster.get("buckets").is_none(), "{cluster:#}");
    assert_eq!(
        row_accounting(&project.path("cluster.json")),
        row_accounting(&project.path("local.json"))
    );
    let segments = |name: &str| {
        let version = common::published(&project.path(&format!("{name}/customer_segments")));
        sorted_rows(&common::table(&version, "segments"))
    };
    assert_eq!(segments("cluster"), segments("local"));
}
