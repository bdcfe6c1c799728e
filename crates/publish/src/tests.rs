use std::sync::Arc;

use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};
use object_store::memory::InMemory;

use super::*;

fn batch(values: Vec<i64>) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values))]).unwrap()
}

fn folder() -> OutputFolder {
    OutputFolder::new(
        Arc::new(InMemory::new()),
        Path::from("out/seg"),
        "memory:///out/seg",
    )
}

fn info() -> RunInfo {
    RunInfo {
        pipeline: "p".to_string(),
        pipeline_hash: "sha256:00".to_string(),
        vars: [("as_of".to_string(), "2011-12-10".to_string())].into(),
        started_at: chrono::Utc::now(),
        metrics: vec![ManifestMetric {
            table: "orders".to_string(),
            metric: "row_count".to_string(),
            value: Some(3.0),
        }],
        inputs: vec![ManifestInput {
            source: "orders".to_string(),
            url: "file:///data/orders.csv".to_string(),
            bytes: 120,
            last_modified: "2011-12-10T06:00:00Z".to_string(),
            e_tag: Some("1a-2b-78".to_string()),
            content_hash: Some("sha256:ab".to_string()),
        }],
        segment_model: None,
    }
}

/// Every file under the folder, relative to it, sorted.
async fn names(folder: &OutputFolder) -> Vec<String> {
    let mut names: Vec<String> = folder
        .list("")
        .await
        .unwrap()
        .iter()
        .map(|meta| folder.relative(&meta.location))
        .collect();
    names.sort();
    names
}

fn columns(run_id: &str) -> RunColumns {
    RunColumns::new(run_id, Some("2011-12-10"))
}

async fn stage(folder: &OutputFolder, run_id: &str, parts: &[Vec<i64>]) -> Staging {
    let mut staging = folder.stage(columns(run_id)).await.unwrap();
    for (i, values) in parts.iter().enumerate() {
        let b = batch(values.clone());
        staging
            .write_parquet(
                "segments",
                &format!("segments/part-{i:05}.parquet"),
                b.schema(),
                &[b],
            )
            .await
            .unwrap();
    }
    staging
}

/// The files of `run_id`'s published version (from its `_SUCCESS`, as a reader finds
/// them: its folder and its table files), relative to the output folder, sorted.
async fn published_names(folder: &OutputFolder, run_id: &str) -> Vec<String> {
    let success = format!("{}/{SUCCESS_MARKER}", OutputFolder::run_dir(run_id));
    let commit: Commit = serde_json::from_slice(&folder.read(&success).await.unwrap().unwrap())
        .expect("_SUCCESS names the published version");
    names(folder)
        .await
        .into_iter()
        .filter(|name| {
            name.starts_with(&commit.path)
                || layout::table_file_run(name) == Some((run_id, commit.attempt.as_str()))
        })
        .collect()
}

async fn manifest_of(folder: &OutputFolder, run_id: &str) -> Manifest {
    let commit = folder.published(run_id).await.unwrap().unwrap();
    let bytes = folder
        .read(&format!("{}{MANIFEST_FILE}", commit.path))
        .await
        .unwrap()
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `names` with each attempt id replaced by `*`, for comparing layouts.
fn shapes(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|name| {
            name.split('/')
                .map(|part| {
                    if part.starts_with(ATTEMPT_PREFIX) {
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
        .collect()
}

#[tokio::test]
async fn a_run_is_visible_only_once_committed_with_manifest_and_pointers() {
    let folder = folder();
    let staging = stage(&folder, "a", &[vec![1, 2, 3], vec![4]]).await;
    assert!(
        names(&folder)
            .await
            .iter()
            .all(|n| n.starts_with(&format!("_staging/a/{ATTEMPT_PREFIX}"))),
        "only staged files exist before publishing"
    );
    assert_eq!(folder.latest().await.unwrap(), None);
    assert_eq!(folder.published("a").await.unwrap(), None);

    let published = staging.publish(&info()).await.unwrap();
    assert_eq!(published.commit.version, 1);
    assert_eq!(
        published.url,
        format!(
            "memory:///out/seg/run_id=a/attempt={}/",
            published.commit.attempt
        )
    );
    assert_eq!(published.run_url, "memory:///out/seg/run_id=a/");
    assert!(published.left_behind.is_empty());
    assert_eq!(
        shapes(&names(&folder).await),
        [
            "_LATEST.json",
            "run_id=a/_SUCCESS",
            "run_id=a/_commits/00000000000000000001.json",
            "run_id=a/attempt=*/_MANIFEST.json",
            "segments/run_id=a/_SUCCESS",
            "segments/run_id=a/part-00000-*.parquet",
            "segments/run_id=a/part-00001-*.parquet",
        ]
    );
    assert_eq!(
        folder.published("a").await.unwrap().unwrap(),
        published.commit
    );
    let attempt = &published.commit.attempt;
    let parts = [
        format!("part-00000-{attempt}.parquet"),
        format!("part-00001-{attempt}.parquet"),
    ];
    let marker: TableCommit = serde_json::from_slice(
        &folder
            .read("segments/run_id=a/_SUCCESS")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(marker.table, "segments");
    assert_eq!(marker.commit, published.commit);
    assert_eq!(marker.files, parts);
    assert_eq!(
        folder
            .table_files(&published.commit, "segments")
            .await
            .unwrap(),
        parts.map(|part| format!("segments/run_id=a/{part}"))
    );
    let manifest = manifest_of(&folder, "a").await;
    assert_eq!(manifest, published.manifest);
    assert_eq!(manifest.run_id, "a");
    assert_eq!(manifest.vars["as_of"], "2011-12-10");
    assert_eq!(manifest.tables.len(), 1);
    assert_eq!(manifest.tables[0].name, "segments");
    assert_eq!(manifest.tables[0].rows, 4);
    let column = |name: &str, data_type: &str| ManifestColumn {
        name: name.to_string(),
        data_type: data_type.to_string(),
        nullable: false,
        null_count: Some(0),
    };
    assert_eq!(
        manifest.tables[0].columns,
        [
            column("v", "int64"),
            column("run_id", "string"),
            column("as_of", "date")
        ],
        "every table ends in the run's columns"
    );
    let rows: Vec<Option<u64>> = manifest.files.iter().map(|f| f.rows).collect();
    assert_eq!(rows, [Some(3), Some(1)]);
    assert!(manifest.files.iter().all(|f| f.bytes > 0));
    let latest = folder.latest().await.unwrap().unwrap();
    assert_eq!(latest.run_id, "a");
    assert_eq!(latest.path, "run_id=a/");
    assert_eq!(latest.version, Some(1));
}

#[tokio::test]
async fn rerunning_a_run_id_commits_a_new_version_and_removes_the_old_one_after() {
    let folder = folder();
    let first = stage(&folder, "a", &[vec![1], vec![2]])
        .await
        .publish(&info())
        .await
        .unwrap();
    stage(&folder, "b", &[vec![7]])
        .await
        .publish(&info())
        .await
        .unwrap();
    let b_before = published_names(&folder, "b").await;
    // Run `a` again with fewer files: no stale part survives, `b` is untouched.
    let second = stage(&folder, "a", &[vec![9, 9]])
        .await
        .publish(&info())
        .await
        .unwrap();
    assert_eq!(second.commit.version, 2);
    assert_ne!(second.commit.attempt, first.commit.attempt);
    assert_eq!(
        shapes(&published_names(&folder, "a").await),
        [
            "run_id=a/attempt=*/_MANIFEST.json",
            "segments/run_id=a/part-00000-*.parquet",
        ]
    );
    assert!(
        names(&folder).await.iter().all(|name| {
            !name.starts_with(&first.commit.path) && !name.contains(&first.commit.attempt)
        }),
        "the superseded version is deleted, its table files with it"
    );
    assert_eq!(
        shapes(&names(&folder).await)
            .into_iter()
            .filter(|name| name.starts_with("segments/run_id=a/"))
            .collect::<Vec<_>>(),
        [
            "segments/run_id=a/_SUCCESS",
            "segments/run_id=a/part-00000-*.parquet"
        ]
    );
    assert_eq!(published_names(&folder, "b").await, b_before);
    assert_eq!(manifest_of(&folder, "a").await.tables[0].rows, 2);
    assert_eq!(manifest_of(&folder, "b").await.tables[0].rows, 1);
    // `b` comes after `a` in run order, so it stays the latest.
    assert_eq!(folder.latest().await.unwrap().unwrap().run_id, "b");
    assert_eq!(second.latest.as_deref(), Some("b"));
}

#[tokio::test]
async fn of_two_attempts_racing_for_one_run_id_exactly_one_publishes() {
    let folder = folder();
    stage(&folder, "a", &[vec![1]])
        .await
        .publish(&info())
        .await
        .unwrap();
    // Both start from version 1; the first to commit wins, whatever it staged.
    let early = stage(&folder, "a", &[vec![2, 2]]).await;
    let late = stage(&folder, "a", &[vec![3, 3, 3]]).await;
    let won = late.publish(&info()).await.unwrap();
    let lost = early.publish(&info()).await.unwrap_err();
    assert!(
        matches!(&lost, PublishError::PublishedConcurrently { run_id, version: 2, .. } if run_id == "a"),
        "{lost}"
    );
    assert_eq!(folder.published("a").await.unwrap().unwrap(), won.commit);
    assert_eq!(manifest_of(&folder, "a").await.tables[0].rows, 3);
    assert_eq!(
        shapes(&names(&folder).await),
        [
            "_LATEST.json",
            "run_id=a/_SUCCESS",
            "run_id=a/_commits/00000000000000000001.json",
            "run_id=a/_commits/00000000000000000002.json",
            "run_id=a/attempt=*/_MANIFEST.json",
            "segments/run_id=a/_SUCCESS",
            "segments/run_id=a/part-00000-*.parquet",
        ],
        "the loser removed its files, its version folder and its staging"
    );
}

#[tokio::test]
async fn a_discarded_run_leaves_published_runs_alone() {
    let folder = folder();
    stage(&folder, "a", &[vec![1]])
        .await
        .publish(&info())
        .await
        .unwrap();
    let before = names(&folder).await;
    let failed = stage(&folder, "b", &[vec![2]]).await;
    failed.discard().await.unwrap();
    assert_eq!(names(&folder).await, before);
}

#[tokio::test]
async fn a_dead_attempt_is_never_published_with_a_later_one() {
    let folder = folder();
    let dead = stage(&folder, "a", &[vec![1], vec![2], vec![3]]).await;
    drop(dead);
    let retry = stage(&folder, "a", &[vec![4]]).await;
    retry.publish(&info()).await.unwrap();
    let parts: Vec<String> = shapes(&published_names(&folder, "a").await)
        .into_iter()
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert_eq!(parts, ["segments/run_id=a/part-00000-*.parquet"]);
    assert_eq!(manifest_of(&folder, "a").await.tables[0].rows, 1);
}

#[tokio::test]
async fn a_pointer_left_behind_by_a_crash_is_moved_on_before_its_version_goes() {
    let folder = folder();
    let first = stage(&folder, "a", &[vec![1]])
        .await
        .publish(&info())
        .await
        .unwrap();
    // A publish that died right after its commit: version 2 is committed, `_SUCCESS`
    // still names version 1, which is whole.
    let mut second = stage(&folder, "a", &[vec![2, 2]]).await;
    second.base_version = 1;
    let version_dir = format!("run_id=a/{ATTEMPT_PREFIX}{}", second.attempt);
    let commit = Commit {
        run_id: "a".to_string(),
        version: 2,
        attempt: second.attempt.clone(),
        path: format!("{version_dir}/"),
        committed_at: String::new(),
    };
    let destinations = second.destinations(&version_dir);
    let manifest = second.manifest(&info(), &destinations);
    second
        .commit(
            &version_dir,
            &destinations,
            &manifest,
            &commit,
            &mut PublishSteps::from_environment(),
        )
        .await
        .unwrap();
    let success = folder.read("run_id=a/_SUCCESS").await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_slice::<Commit>(&success).unwrap(),
        first.commit
    );
    assert_eq!(folder.published("a").await.unwrap().unwrap(), commit);

    let runs = folder.runs().await.unwrap();
    let statuses: Vec<(RunStatus, Option<u64>)> =
        runs.iter().map(|run| (run.status, run.version)).collect();
    assert_eq!(
        statuses,
        [
            (RunStatus::Published, Some(2)),
            (RunStatus::Superseded, Some(1)),
        ]
    );
    let stale = folder
        .stale_runs(chrono::Duration::seconds(-1))
        .await
        .unwrap();
    folder.remove_runs(&stale).await.unwrap();
    let success = folder.read("run_id=a/_SUCCESS").await.unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<Commit>(&success).unwrap(), commit);
    assert_eq!(manifest_of(&folder, "a").await.tables[0].rows, 2);
    assert!(names(&folder).await.iter().all(|name| {
        !name.starts_with(&first.commit.path)
            && !name.contains(&first.commit.attempt)
            && !name.starts_with("_staging")
    }));
}

#[tokio::test]
async fn a_run_published_before_versions_is_read_and_replaced() {
    let folder = folder();
    for (name, bytes) in [
        ("run_id=old/segments/part-00000.parquet", b"x".to_vec()),
        ("run_id=old/_MANIFEST.json", b"{}".to_vec()),
        ("run_id=old/_SUCCESS", Vec::new()),
    ] {
        folder.put(name, bytes, PutMode::Overwrite).await.unwrap();
    }
    let legacy = folder.published("old").await.unwrap().unwrap();
    assert_eq!((legacy.version, legacy.path.as_str()), (0, "run_id=old/"));
    let runs = folder.runs().await.unwrap();
    assert_eq!(
        (runs[0].status, runs[0].version, runs[0].files),
        (RunStatus::Published, Some(0), 2)
    );

    stage(&folder, "old", &[vec![5]])
        .await
        .publish(&info())
        .await
        .unwrap();
    assert_eq!(
        shapes(&names(&folder).await),
        [
            "_LATEST.json",
            "run_id=old/_SUCCESS",
            "run_id=old/_commits/00000000000000000001.json",
            "run_id=old/attempt=*/_MANIFEST.json",
            "segments/run_id=old/_SUCCESS",
            "segments/run_id=old/part-00000-*.parquet",
        ]
    );
}

/// A run published with its tables in its version folder (schema version 3) is read
/// through its files there, and replaced by a run in table folders.
#[tokio::test]
async fn a_run_published_before_table_folders_is_read_and_replaced() {
    let folder = folder();
    let attempt = "20261101T000000000Z-00000000";
    let version_dir = format!("run_id=v3/{ATTEMPT_PREFIX}{attempt}");
    let commit = Commit {
        run_id: "v3".to_string(),
        version: 1,
        attempt: attempt.to_string(),
        path: format!("{version_dir}/"),
        committed_at: String::new(),
    };
    let json = serde_json::to_vec(&commit).unwrap();
    for (name, bytes) in [
        (format!("{version_dir}/segments/part-00001.parquet"), b"x".to_vec()),
        (format!("{version_dir}/segments/part-00000.parquet"), b"x".to_vec()),
        (format!("{version_dir}/_rejects/orders.parquet"), b"x".to_vec()),
        (format!("{version_dir}/model.json"), b"{}".to_vec()),
        (
            format!("{version_dir}/_MANIFEST.json"),
            br#"{"schema_version":3,"run_id":"v3","pipeline":"p","pipeline_hash":"","segflow_version":"0","vars":{},"started_at":"","ended_at":"","tables":[],"files":[]}"#.to_vec(),
        ),
        (commits::commit_name("v3", 1), json.clone()),
        ("run_id=v3/_SUCCESS".to_string(), json),
    ] {
        folder.put(&name, bytes, PutMode::Overwrite).await.unwrap();
    }
    assert_eq!(
        folder.table_files(&commit, "segments").await.unwrap(),
        [
            format!("{version_dir}/segments/part-00000.parquet"),
            format!("{version_dir}/segments/part-00001.parquet")
        ]
    );
    assert_eq!(
        folder.table_files(&commit, "rejects/orders").await.unwrap(),
        [format!("{version_dir}/_rejects/orders.parquet")]
    );
    let runs = folder.runs().await.unwrap();
    assert_eq!(
        (runs[0].status, runs[0].version, runs[0].files),
        (RunStatus::Published, Some(1), 5)
    );

    stage(&folder, "v3", &[vec![5]])
        .await
        .publish(&info())
        .await
        .unwrap();
    assert_eq!(
        shapes(&names(&folder).await),
        [
            "_LATEST.json",
            "run_id=v3/_SUCCESS",
            "run_id=v3/_commits/00000000000000000001.json",
            "run_id=v3/_commits/00000000000000000002.json",
            "run_id=v3/attempt=*/_MANIFEST.json",
            "segments/run_id=v3/_SUCCESS",
            "segments/run_id=v3/part-00000-*.parquet",
        ],
        "the old version's folder, its tables inside, is gone"
    );
}

#[tokio::test]
async fn runs_are_listed_with_status_and_dead_ones_collected() {
    let folder = folder();
    stage(&folder, "run-9", &[vec![1]])
        .await
        .publish(&info())
        .await
        .unwrap();
    stage(&folder, "run-10", &[vec![1, 2]])
        .await
        .publish(&info())
        .await
        .unwrap();
    let dead = stage(&folder, "dead", &[vec![5]]).await;
    // A publish that died after moving its files but before its commit.
    let half = "20261202T000000000Z-00000000";
    for name in [
        format!("segments/run_id=half/part-00000-{half}.parquet"),
        format!("run_id=half/attempt={half}/_MANIFEST.json"),
    ] {
        folder
            .put(&name, b"x".to_vec(), PutMode::Overwrite)
            .await
            .unwrap();
    }

    let runs = folder.runs().await.unwrap();
    let summary: Vec<(&str, RunStatus, bool)> = runs
        .iter()
        .map(|run| (run.run_id.as_str(), run.status, run.latest))
        .collect();
    assert_eq!(
        summary,
        [
            ("run-10", RunStatus::Published, true),
            ("run-9", RunStatus::Published, false),
            ("half", RunStatus::Incomplete, false),
            ("dead", RunStatus::Staging, false),
        ]
    );
    assert_eq!(runs[0].files, 2, "the part and the manifest");
    assert_eq!(
        shapes(&runs[2].table_files),
        ["segments/run_id=half/part-00000-*.parquet"]
    );
    assert_eq!(
        runs[3].path,
        format!("_staging/dead/{ATTEMPT_PREFIX}{}/", dead.attempt())
    );

    let recent = folder.stale_runs(chrono::Duration::hours(1)).await.unwrap();
    assert!(recent.is_empty(), "young folders may belong to a live run");
    let stale = folder
        .stale_runs(chrono::Duration::seconds(-1))
        .await
        .unwrap();
    let stale_ids: Vec<&str> = stale.iter().map(|run| run.run_id.as_str()).collect();
    assert_eq!(stale_ids, ["half", "dead"]);
    assert_eq!(folder.remove_runs(&stale).await.unwrap(), 3);
    assert!(
        names(&folder)
            .await
            .iter()
            .all(|name| !name.contains("half") && !name.contains("dead")),
        "dead attempts go with their table files"
    );
    let left: Vec<String> = folder
        .runs()
        .await
        .unwrap()
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    assert_eq!(left, ["run-10", "run-9"]);
}

#[tokio::test]
async fn files_written_by_others_are_adopted_renamed_in_order_and_counted() {
    let folder = folder();
    let mut staging = folder.stage(columns("a")).await.unwrap();
    // As a cluster's executors name them: random, in no useful order; they add the run's
    // columns themselves.
    for (name, values) in [
        ("f0c1_3.parquet", vec![4, 5]),
        ("a9e2_0.parquet", vec![1, 2, 3]),
    ] {
        let plain = batch(values);
        let schema = staging
            .published_schema("segments", &plain.schema())
            .unwrap();
        let b = staging
            .run_columns()
            .published_batch(&plain, &schema)
            .unwrap();
        let mut bytes = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, b.schema(), None).unwrap();
        writer.write(&b).unwrap();
        writer.close().unwrap();
        folder
            .store
            .put(
                &folder.path(&format!("{}/segments/{name}", staging.prefix)),
                PutPayload::from(bytes),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        staging
            .adopt_parquet("segments", "segments/")
            .await
            .unwrap(),
        5
    );
    staging.publish(&info()).await.unwrap();
    assert_eq!(
        shapes(&published_names(&folder, "a").await),
        [
            "run_id=a/attempt=*/_MANIFEST.json",
            "segments/run_id=a/part-00000-*.parquet",
            "segments/run_id=a/part-00001-*.parquet",
        ]
    );
    let manifest = manifest_of(&folder, "a").await;
    assert_eq!(manifest.tables[0].rows, 5);
    let rows: Vec<Option<u64>> = manifest.files.iter().map(|f| f.rows).collect();
    assert_eq!(
        rows,
        [Some(3), Some(2)],
        "renamed in name order: a9e2_0 first"
    );
    assert_eq!(manifest.tables[0].columns[0].name, "v");
}

#[tokio::test]
async fn files_written_by_others_without_the_runs_columns_are_refused() {
    let folder = folder();
    let mut staging = folder.stage(columns("a")).await.unwrap();
    let b = batch(vec![1]);
    let mut bytes = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, b.schema(), None).unwrap();
    writer.write(&b).unwrap();
    writer.close().unwrap();
    folder
        .store
        .put(
            &folder.path(&format!("{}/segments/x.parquet", staging.prefix)),
            PutPayload::from(bytes),
        )
        .await
        .unwrap();
    let error = staging
        .adopt_parquet("segments", "segments/")
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("was written without the run's columns (`run_id`, `as_of`) last"),
        "{error}"
    );
}

#[tokio::test]
async fn a_table_name_that_is_not_a_plain_folder_is_refused() {
    let folder = folder();
    let mut staging = folder.stage(columns("a")).await.unwrap();
    let b = batch(vec![1]);
    let error = staging
        .write_parquet("_hidden", "hidden.parquet", b.schema(), &[b])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "table `_hidden` is not a name segflow can publish a table under: `_hidden` would not be read as a table folder"
    );
}

#[tokio::test]
async fn string_views_are_published_as_plain_strings() {
    let folder = folder();
    let mut staging = folder.stage(columns("a")).await.unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new(
        "reason",
        DataType::Utf8View,
        true,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(arrow::array::StringViewArray::from(vec![
            Some("quantity 20000 is above the maximum 10000"),
            None,
        ]))],
    )
    .unwrap();
    staging
        .write_parquet(
            "rejects",
            "rejects.parquet",
            schema.clone(),
            std::slice::from_ref(&batch),
        )
        .await
        .unwrap();
    let mut writer = staging
        .table_writer("streamed", "streamed.parquet", schema)
        .unwrap();
    writer.write(&batch).await.unwrap();
    writer.finish(&mut staging).await.unwrap();
    let published = staging.publish(&info()).await.unwrap();
    for file in &published.files {
        let table = file.table.as_ref().unwrap();
        assert_eq!(
            table.schema.field(0).data_type(),
            &DataType::Utf8,
            "{}",
            table.table
        );
        assert_eq!(table.rows, 2);
    }
    let manifest = manifest_of(&folder, "a").await;
    for table in &manifest.tables {
        assert_eq!(table.columns[0].data_type, "string", "{}", table.name);
        assert_eq!(table.columns[0].null_count, Some(1), "{}", table.name);
    }
}

#[test]
fn run_ids_compare_in_natural_order() {
    use std::cmp::Ordering::*;
    let cases = [
        ("run-9", "run-10", Less),
        ("2011-12-09", "2011-12-10", Less),
        ("2011-9-30", "2011-10-01", Less),
        ("20261202T075550Z-99", "20261202T075551Z-1", Less),
        ("a", "a", Equal),
        ("b", "a", Greater),
        ("007", "7", Less),
    ];
    for (a, b, expected) in cases {
        assert_eq!(compare_run_ids(a, b), expected, "{a} vs {b}");
        assert_eq!(compare_run_ids(b, a), expected.reverse(), "{b} vs {a}");
    }
}

#[tokio::test]
async fn a_backfill_leaves_latest_alone_and_has_the_next_smaller_run_as_previous() {
    let folder = folder();
    for run_id in ["2011-12-08", "2011-12-10"] {
        let published = stage(&folder, run_id, &[vec![1]])
            .await
            .publish(&info())
            .await;
        assert_eq!(published.unwrap().latest.as_deref(), Some(run_id));
    }
    // Published after 12-10, but earlier in run order.
    let backfill = stage(&folder, "2011-12-09", &[vec![2]]).await;
    let published = backfill.publish(&info()).await.unwrap();
    assert_eq!(published.latest.as_deref(), Some("2011-12-10"));
    assert_eq!(folder.latest().await.unwrap().unwrap().run_id, "2011-12-10");

    let listed: Vec<String> = folder
        .runs()
        .await
        .unwrap()
        .into_iter()
        .map(|run| run.run_id)
        .collect();
    assert_eq!(listed, ["2011-12-10", "2011-12-09", "2011-12-08"]);

    let previous = |id: &'static str| {
        let folder = folder.clone();
        async move {
            folder
                .previous_published(id)
                .await
                .unwrap()
                .map(|r| r.run_id)
        }
    };
    assert_eq!(previous("2011-12-09").await.as_deref(), Some("2011-12-08"));
    // A rerun of a day is not its own baseline; the day after the last has the last.
    assert_eq!(previous("2011-12-10").await.as_deref(), Some("2011-12-09"));
    assert_eq!(previous("2011-12-11").await.as_deref(), Some("2011-12-10"));
    assert_eq!(previous("2011-12-08").await, None);
    let manifest = folder
        .published_manifest("2011-12-09")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(manifest.run_id, "2011-12-09");
    assert_eq!(manifest.metrics, info().metrics);
    assert_eq!(manifest.inputs, info().inputs);
    assert_eq!(folder.published_manifest("2011-12-31").await.unwrap(), None);

    // A run later in order moves the pointer again.
    let next = stage(&folder, "2011-12-11", &[vec![3]]).await;
    assert_eq!(
        next.publish(&info()).await.unwrap().latest.as_deref(),
        Some("2011-12-11")
    );
}

#[test]
fn type_names_are_stable_and_logical() {
    use arrow::datatypes::{Fields, TimeUnit};
    let cases = [
        (DataType::Int64, "int64"),
        (DataType::Utf8View, "string"),
        (DataType::LargeUtf8, "string"),
        (DataType::Date32, "date"),
        (DataType::Decimal128(12, 2), "decimal(12,2)"),
        (
            DataType::Timestamp(TimeUnit::Microsecond, None),
            "timestamp(us)",
        ),
        (
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            "timestamp(ns, UTC)",
        ),
        (
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            "string",
        ),
        (
            DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
            "list<float64>",
        ),
        (
            DataType::Struct(Fields::from(vec![
                Field::new("a", DataType::Int32, false),
                Field::new("b", DataType::Boolean, true),
            ])),
            "struct<a: int32, b: boolean>",
        ),
    ];
    for (data_type, name) in cases {
        assert_eq!(type_name(&data_type), name, "{data_type}");
    }
}

#[tokio::test]
async fn the_manifest_counts_each_columns_nulls_over_the_files() {
    use arrow::array::StringArray;
    let folder = folder();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
    ]));
    let part = |ids: Vec<i64>, emails: Vec<Option<&str>>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(emails)),
            ],
        )
        .unwrap()
    };
    let mut staging = folder.stage(RunColumns::new("r", None)).await.unwrap();
    let first = part(vec![1, 2], vec![Some("a@x"), None]);
    let second = part(vec![3, 4, 5], vec![None, None, Some("b@x")]);
    for (i, batch) in [first, second].iter().enumerate() {
        staging
            .write_parquet(
                "customers",
                &format!("customers/part-{i:05}.parquet"),
                schema.clone(),
                std::slice::from_ref(batch),
            )
            .await
            .unwrap();
    }
    let manifest = staging.publish(&info()).await.unwrap().manifest;
    assert_eq!(manifest.schema_version, MANIFEST_SCHEMA_VERSION);
    let columns = &manifest.tables[0].columns;
    let counts: Vec<(&str, &str, Option<u64>)> = columns
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_str(), c.null_count))
        .collect();
    assert_eq!(
        counts,
        [
            ("id", "int64", Some(0)),
            ("email", "string", Some(3)),
            ("run_id", "string", Some(0))
        ]
    );
}

#[tokio::test]
async fn a_staged_run_reads_as_the_published_run_will() {
    let folder = folder();
    let mut staging = stage(&folder, "r1", &[vec![1, 2], vec![3]]).await;
    staging
        .write_bytes("model.json", b"{\"k\": 2}".to_vec())
        .await
        .unwrap();
    let info = info();
    let staged = staging.run_files(&info);
    let staged_rows = staged.table("segments", &["v"]).await.unwrap().unwrap();
    let staged_model = staged.file("model.json").await.unwrap().unwrap();
    let staged_manifest = staged.manifest().clone();
    assert!(
        staged.file("report.html").await.unwrap().is_none(),
        "not listed"
    );
    assert!(staged.table("profile", &["v"]).await.unwrap().is_none());
    staging.publish(&info).await.unwrap();

    let published = folder.run_files("r1").await.unwrap();
    assert_eq!(published.version_path(), staged.version_path());
    assert_eq!(
        published.manifest(),
        &Manifest {
            ended_at: published.manifest().ended_at.clone(),
            ..staged_manifest
        },
        "the same manifest but for its end"
    );
    let rows = published.table("segments", &["v"]).await.unwrap().unwrap();
    assert_eq!(rows, staged_rows);
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    assert_eq!(
        rows[0].schema().fields().len(),
        1,
        "only the columns asked for"
    );
    assert_eq!(
        published.file("model.json").await.unwrap().unwrap(),
        staged_model
    );

    let error = folder.run_files("r2").await.unwrap_err();
    assert!(
        matches!(error, RunFilesError::NotPublished { .. }),
        "{error}"
    );
}
