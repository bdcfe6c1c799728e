//! The example pipeline against a real S3-compatible server (SeaweedFS on 127.0.0.1):
//! sources read from a bucket, outputs published to it, runs kept apart, and the failures a
//! scheduled job meets (a server that dies mid-run, refused credentials, a missing bucket,
//! an unreachable endpoint) reported clearly without a half-published result.
//!
//! Skipped with a note when `weed` is not installed, unless `SEGFLOW_REQUIRE_S3` is set.

mod common;

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use common::proxy::CutOffProxy;
use common::seaweedfs::SeaweedFs;
use common::{Project, Run, sorted_rows};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const PIPELINE: &str = "pipelines/customer_segments.yaml";
const BUCKET: &str = "lake";
const OUTPUT: &str = "out/customer_segments";

/// A copy of the project with the example's raw export uploaded to the bucket.
fn project_on(server: &SeaweedFs) -> Project {
    let project = Project::copy_of_repository();
    let csv = std::fs::read(project.path("fixtures/retail/transactions.csv")).unwrap();
    server.upload(BUCKET, "fixtures/retail/transactions.csv", csv);
    project
}

/// `segflow ARGS` with the S3 settings in the environment, as the README shows.
fn segflow_on(project: &Project, server: &SeaweedFs, args: &[&str]) -> Run {
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    project.segflow_with_env(args, &env)
}

fn run_on_s3(project: &Project, server: &SeaweedFs, extra: &[&str]) -> Run {
    let mut args = vec![
        "run",
        PIPELINE,
        "--var",
        "fixtures=s3://lake/fixtures",
        "--var",
        "output=s3://lake/out",
    ];
    args.extend_from_slice(extra);
    segflow_on(project, server, &args)
}

/// The key prefix (ending in `/`) of `run_id`'s published version in the bucket, found
/// as a loader finds it: from the run's `_SUCCESS`.
fn published_prefix(server: &SeaweedFs, run_id: &str) -> String {
    let success = server.get(BUCKET, &format!("{OUTPUT}/run_id={run_id}/_SUCCESS"));
    let commit: serde_json::Value = serde_json::from_slice(&success).unwrap();
    format!("{OUTPUT}/{}", commit["path"].as_str().unwrap())
}

/// Keys with attempt ids replaced by `*`, for comparing layouts.
fn shapes(listing: &[(String, u64)]) -> Vec<String> {
    let mut shapes: Vec<String> = listing
        .iter()
        .map(|(key, _)| {
            key.split('/')
                .map(|part| {
                    if part.starts_with("attempt=") {
                        return "attempt=*".to_string();
                    }
                    match part
                        .strip_prefix("part-")
                        .and_then(|rest| rest.split_once('-'))
                    {
                        Some((number, _)) => format!("part-{number}-*.parquet"),
                        None => part.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    shapes.sort();
    shapes
}

fn without_file(batches: &[RecordBatch]) -> Vec<RecordBatch> {
    batches
        .iter()
        .map(|batch| {
            let keep: Vec<usize> = (0..batch.num_columns())
                .filter(|&i| batch.schema().field(i).name() != "file")
                .collect();
            batch.project(&keep).unwrap()
        })
        .collect()
}

fn parquet_from_bucket(server: &SeaweedFs, key: &str) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(server.get(BUCKET, key))
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn example_pipeline_on_s3_publishes_what_the_local_run_does() {
    let Some(server) = SeaweedFs::start(&[BUCKET]) else {
        return;
    };
    let project = project_on(&server);
    project.segflow(&["run", PIPELINE]).assert_exit(0);
    let local = common::published_run(&project.path(OUTPUT), "2011-12-10");

    let run = run_on_s3(&project, &server, &[]);
    run.assert_exit(0);
    assert!(
        run.stdout.contains("  s3://lake/out/customer_segments/\n")
            && run
                .stdout
                .contains("    segments/run_id=2011-12-10/part-00000-"),
        "{}",
        run.stdout
    );

    // Every table, file by file and row by row, equals the local run's.
    let version = published_prefix(&server, "2011-12-10");
    let manifest: serde_json::Value =
        serde_json::from_slice(&server.get(BUCKET, &format!("{version}_MANIFEST.json"))).unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 11, "{manifest:#}");
    // The report, rendered again from the bucket by the run's folder URL, is the one the
    // run published there.
    segflow_on(
        &project,
        &server,
        &[
            "report",
            &format!("s3://{BUCKET}/{OUTPUT}/run_id=2011-12-10/"),
            "-o",
            "from-s3.html",
        ],
    )
    .assert_exit(0);
    assert!(
        std::fs::read(project.path("from-s3.html")).unwrap()
            == server.get(BUCKET, &format!("{version}report.html")),
        "segflow report renders the published page again"
    );
    for file in files {
        // Relative to the output folder: tables in their folders, the rest in the version's.
        let path = file["path"].as_str().unwrap();
        let Some(table) = file["table"].as_str() else {
            let name = path.rsplit('/').next().unwrap();
            let remote = server.get(BUCKET, &format!("{OUTPUT}/{path}"));
            if name == "report.html" {
                // Times and input URLs differ; the segments, their value and actions do not.
                let local = std::fs::read_to_string(local.join(name)).unwrap();
                let remote = String::from_utf8(remote.to_vec()).unwrap();
                assert_eq!(
                    common::report_section(&remote, "segments"),
                    common::report_section(&local, "segments")
                );
                continue;
            }
            if name == "run.json" {
                let remote: serde_json::Value = serde_json::from_slice(&remote).unwrap();
                assert_eq!(remote["status"], "success");
                assert_eq!(
                    remote["segment"]["sizes"],
                    serde_json::json!([415, 250, 237, 217, 191])
                );
                continue;
            }
            // model.json: the same model, number for number.
            let remote: serde_json::Value = serde_json::from_slice(&remote).unwrap();
            let local: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(local.join(name)).unwrap()).unwrap();
            assert_eq!(remote, local, "{path}");
            continue;
        };
        assert!(
            path.starts_with(&format!("{table}/run_id=2011-12-10/part-")),
            "{path}"
        );
        let remote = parquet_from_bucket(&server, &format!("{OUTPUT}/{path}"));
        let local = common::table(&local, table);
        if table == "rejects/raw_transactions" {
            // Rejected lines name the file they came from, which differs by design.
            let files = |batches: &[RecordBatch]| -> Vec<String> {
                batches
                    .iter()
                    .flat_map(|b| {
                        let column = b.column_by_name("file").unwrap().as_string::<i32>();
                        column
                            .iter()
                            .map(|v| v.unwrap().to_string())
                            .collect::<Vec<_>>()
                    })
                    .collect()
            };
            assert!(
                files(&remote)
                    .iter()
                    .all(|file| file == "s3://lake/fixtures/retail/transactions.csv")
            );
            assert_eq!(
                sorted_rows(&without_file(&remote)),
                sorted_rows(&without_file(&local)),
                "{path}"
            );
        } else {
            assert_eq!(remote[0].schema(), local[0].schema(), "{path}");
            assert_eq!(sorted_rows(&remote), sorted_rows(&local), "{path}");
        }
    }
    let published = server.list(BUCKET, OUTPUT);
    let keys: Vec<&str> = published.iter().map(|(key, _)| key.as_str()).collect();
    assert!(keys.contains(&"out/customer_segments/run_id=2011-12-10/_SUCCESS"));
    assert!(keys.contains(&"out/customer_segments/_LATEST.json"));
    assert!(
        keys.iter().all(|key| !key.contains("_staging")),
        "staging is cleaned: {keys:?}"
    );

    // A rerun of the same run id commits version 2 and leaves exactly one copy of each
    // output, in a folder of its own (sizes may differ: rejects carry no row order).
    run_on_s3(&project, &server, &[]).assert_exit(0);
    let rerun = server.list(BUCKET, OUTPUT);
    let mut expected = shapes(&published);
    expected.push(format!(
        "{OUTPUT}/run_id=2011-12-10/_commits/00000000000000000002.json"
    ));
    expected.sort();
    assert_eq!(shapes(&rerun), expected);
    let second = published_prefix(&server, "2011-12-10");
    assert_ne!(second, version);
    let first_attempt = version
        .rsplit_once("attempt=")
        .unwrap()
        .1
        .trim_end_matches('/');
    assert!(
        rerun
            .iter()
            .all(|(key, _)| !key.starts_with(&version) && !key.contains(first_attempt)),
        "the first version's folder and table files are gone"
    );

    // Another run id is published beside it; the first stays byte for byte as it was.
    run_on_s3(&project, &server, &["--run-id", "2011-12-10-rerun"]).assert_exit(0);
    let first_run = |listing: Vec<(String, u64)>| -> Vec<(String, u64)> {
        listing
            .into_iter()
            .filter(|(key, _)| key.contains("/run_id=2011-12-10/"))
            .collect()
    };
    let both = server.list(BUCKET, OUTPUT);
    assert_eq!(first_run(both.clone()), first_run(rerun));
    assert!(
        both.iter()
            .any(|(key, _)| key.ends_with("/run_id=2011-12-10-rerun/_SUCCESS"))
    );
    let runs = segflow_on(
        &project,
        &server,
        &["runs", "s3://lake/out/customer_segments"],
    );
    runs.assert_exit(0);
    let statuses: BTreeMap<&str, &str> = runs
        .stdout
        .lines()
        .skip(2)
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words.len() > 2).then(|| (words[0], words[1]))
        })
        .collect();
    assert_eq!(
        statuses,
        BTreeMap::from([
            ("2011-12-10", "published"),
            ("2011-12-10-rerun", "published")
        ]),
        "{}",
        runs.stdout
    );
    assert!(
        runs.stdout
            .lines()
            .any(|line| line.contains("2011-12-10-rerun") && line.contains("(latest)")),
        "{}",
        runs.stdout
    );
}

/// The example pipeline with its stores configured in the file, through `endpoint`.
fn pipeline_with_store_options(project: &Project) {
    let path = project.path(PIPELINE);
    let text = std::fs::read_to_string(&path).unwrap();
    let options = "    options:\n      endpoint: ${endpoint}\n      region: us-east-1\n      allow_http: \"true\"\n      virtual_hosted_style_request: \"false\"\n      max_retries: \"2\"\n      retry_timeout: 3s\n      connect_timeout: 1s\n";
    let text = text
        .replace(
            "  fixtures: file://../fixtures\n",
            "  fixtures: s3://lake/fixtures\n  endpoint: http://127.0.0.1:1\n",
        )
        .replace("  output: file://../out\n", "  output: s3://lake/out\n")
        .replace(
            "    url: ${fixtures}\n",
            &format!("    url: ${{fixtures}}\n{options}"),
        )
        .replace(
            "    url: ${output}\n",
            &format!("    url: ${{output}}\n{options}"),
        );
    assert_eq!(text.matches("max_retries").count(), 2, "{text}");
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_server_that_dies_mid_run_leaves_earlier_runs_and_no_success_marker() {
    let Some(server) = SeaweedFs::start(&[BUCKET]) else {
        return;
    };
    let project = project_on(&server);
    pipeline_with_store_options(&project);
    let direct = format!("endpoint={}", server.endpoint());
    segflow_on(
        &project,
        &server,
        &["run", PIPELINE, "--var", &direct, "--run-id", "day-1"],
    )
    .assert_exit(0);
    let before = server.list(BUCKET, OUTPUT);

    // The next run reaches the server through a proxy that stops the server just as the
    // run starts writing its segments: sources are read, rejects already staged.
    let proxy = CutOffProxy::start(
        server.s3_port(),
        |request| {
            request.starts_with("PUT ")
                && request.contains("/_staging/day-2/")
                && request.contains("/segments/")
        },
        server.stopper(),
    );
    let through_proxy = format!("endpoint=http://127.0.0.1:{}", proxy.port);
    let started = std::time::Instant::now();
    let run = segflow_on(
        &project,
        &server,
        &[
            "run",
            PIPELINE,
            "--var",
            &through_proxy,
            "--run-id",
            "day-2",
        ],
    );
    assert!(proxy.tripped(), "the run reached its segments");
    run.assert_exit(1);
    // The log also warns that the staged files could not be removed (the server is gone).
    let error = run
        .stderr
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(
        error.starts_with("error: publishing outputs: writing Parquet to s3://lake/out/customer_segments/_staging/day-2/attempt=")
            && error.contains("/segments/part-00000.parquet")
            && error.contains("cannot reach the store's endpoint http://127.0.0.1:"),
        "{error}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the store's retry settings bound the wait"
    );

    server.restart();
    let after = server.list(BUCKET, OUTPUT);
    assert!(
        after.iter().all(|(key, _)| !key.contains("run_id=day-2")),
        "nothing of the failed run is published: {after:?}"
    );
    let published = |listing: &[(String, u64)]| -> Vec<(String, u64)> {
        listing
            .iter()
            .filter(|(key, _)| !key.contains("/_staging/"))
            .cloned()
            .collect()
    };
    assert_eq!(
        published(&after),
        published(&before),
        "day-1 and the latest pointer are untouched"
    );
    let latest: serde_json::Value =
        serde_json::from_slice(&server.get(BUCKET, "out/customer_segments/_LATEST.json")).unwrap();
    assert_eq!(latest["run_id"], "day-1");

    // What the dead run staged is reported and can be cleaned.
    let runs = segflow_on(&project, &server, &["runs", PIPELINE, "--var", &direct]);
    runs.assert_exit(0);
    assert!(
        runs.stdout
            .lines()
            .any(|line| line.contains("day-2") && line.contains("staging")),
        "{}",
        runs.stdout
    );
    segflow_on(
        &project,
        &server,
        &["gc", PIPELINE, "--var", &direct, "--older-than", "0s"],
    )
    .assert_exit(0);
    assert_eq!(server.list(BUCKET, OUTPUT), before);

    // And the same run id, rerun with the server back, publishes normally.
    segflow_on(
        &project,
        &server,
        &["run", PIPELINE, "--var", &direct, "--run-id", "day-2"],
    )
    .assert_exit(0);
    assert!(
        server
            .list(BUCKET, "out/customer_segments/run_id=day-2")
            .iter()
            .any(|(key, _)| key.ends_with("/_SUCCESS"))
    );
}

#[test]
fn store_access_problems_fail_before_any_step_with_one_clear_line() {
    let Some(server) = SeaweedFs::start(&[BUCKET]) else {
        return;
    };
    let project = project_on(&server);
    let mut env = server.env();
    let run = |env: &[(&'static str, String)], output: &str| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let output = format!("output={output}");
        let run = project.segflow_with_env(
            &[
                "run",
                PIPELINE,
                "-v",
                "--var",
                "fixtures=s3://lake/fixtures",
                "--var",
                &output,
            ],
            &env,
        );
        run.assert_exit(1);
        assert!(
            !run.stderr.contains("running step"),
            "no step ran: {}",
            run.stderr
        );
        run.stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap()
            .to_string()
    };

    let missing_bucket = run(&env, "s3://no-such-bucket/out");
    assert_eq!(
        missing_bucket,
        "error: store `output` (s3://no-such-bucket/out/): listing: the bucket does not exist (NoSuchBucket)"
    );

    env.retain(|(key, _)| *key != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".to_string()));
    let refused = run(&env, "s3://lake/out");
    assert_eq!(
        refused,
        "error: store `fixtures` (s3://lake/fixtures/): listing: the credentials were refused (check the store's credentials in the environment) (SignatureDoesNotMatch)"
    );

    server.stop();
    let env = server.env();
    let unreachable = run(&env, "s3://lake/out");
    assert!(
        unreachable.starts_with(&format!(
            "error: store `fixtures` (s3://lake/fixtures/): listing: cannot reach the store's endpoint {} (",
            server.endpoint()
        )),
        "{unreachable}"
    );
    assert!(!project.path("out").exists());
}

#[test]
fn generate_streams_to_a_bucket_the_bytes_it_writes_locally() {
    let Some(server) = SeaweedFs::start(&[BUCKET]) else {
        return;
    };
    let project = Project::copy_of_repository();
    // 200,000 lines are about 17 MB: more than one part of a multipart upload.
    let args = ["--rows", "200000", "--seed", "9"];
    let local = project.segflow(&[&["generate", "local.csv"][..], &args].concat());
    local.assert_exit(0);
    let remote = segflow_on(
        &project,
        &server,
        &[&["generate", "s3://lake/raw/lines.csv"][..], &args].concat(),
    );
    remote.assert_exit(0);
    assert!(
        remote.stdout.contains("wrote 200,000 rows"),
        "{}",
        remote.stdout
    );
    let expected = std::fs::read(project.path("local.csv")).unwrap();
    assert!(expected.len() > 10 << 20);
    assert!(server.get(BUCKET, "raw/lines.csv") == expected);
    assert_eq!(
        server.list(BUCKET, "raw/"),
        vec![("raw/lines.csv".to_string(), expected.len() as u64)],
        "one object, no leftover parts"
    );
}

#[test]
fn if_changed_on_s3_judges_input_objects_by_their_etag() {
    let Some(server) = SeaweedFs::start(&[BUCKET]) else {
        return;
    };
    let project = project_on(&server);
    run_on_s3(&project, &server, &["--run-id", "2011-12-10"]).assert_exit(0);
    let version = published_prefix(&server, "2011-12-10");
    let manifest: serde_json::Value =
        serde_json::from_slice(&server.get(BUCKET, &format!("{version}_MANIFEST.json"))).unwrap();
    let csv = std::fs::read(project.path("fixtures/retail/transactions.csv")).unwrap();
    let inputs = manifest["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 1, "{manifest:#}");
    assert_eq!(
        inputs[0]["url"],
        "s3://lake/fixtures/retail/transactions.csv"
    );
    assert_eq!(inputs[0]["bytes"], csv.len() as u64);
    assert!(inputs[0]["e_tag"].is_string(), "{manifest:#}");
    // A remote file is not read a second time to hash it.
    assert!(inputs[0].get("content_hash").is_none(), "{manifest:#}");

    let if_changed = ["--if-changed", "--run-id", "2011-12-11"];
    // The same bytes uploaded again keep their ETag: nothing to run.
    server.upload(BUCKET, "fixtures/retail/transactions.csv", csv.clone());
    let skipped = run_on_s3(&project, &server, &if_changed);
    skipped.assert_exit(0);
    assert!(
        skipped
            .stdout
            .contains("unchanged: run 2011-12-10 is current"),
        "{}",
        skipped.stdout
    );
    assert!(
        server
            .list(BUCKET, OUTPUT)
            .iter()
            .all(|(key, _)| !key.contains("run_id=2011-12-11")),
    );

    // Other bytes of the same size: a new ETag, and the run goes ahead.
    let text = String::from_utf8(csv).unwrap();
    let changed = text.replacen("United Kingdom", "United Kingdon", 1);
    assert_ne!(changed, text);
    server.upload(
        BUCKET,
        "fixtures/retail/transactions.csv",
        changed.into_bytes(),
    );
    let ran = run_on_s3(&project, &server, &if_changed);
    ran.assert_exit(0);
    assert!(
        ran.stdout
            .contains("input file s3://lake/fixtures/retail/transactions.csv has a new ETag"),
        "{}",
        ran.stdout
    );
    assert!(
        server
            .list(BUCKET, OUTPUT)
            .iter()
            .any(|(key, _)| key.ends_with("run_id=2011-12-11/_SUCCESS")),
    );
}
