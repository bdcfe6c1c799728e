//! `--if-changed`: whether a run would repeat the latest published one. It would when the
//! pipeline's content hash, the variables, segflow's version and every input file equal
//! what that run's manifest recorded; then nothing needs to run. A leaf: it compares
//! manifests and listings, and reads nothing itself.

use std::collections::{BTreeMap, BTreeSet};

use segflow_publish::{Manifest, ManifestInput};

/// Files named one by one in a list of changes; the rest are counted.
const FILES_NAMED: usize = 5;

/// What differs from the latest published run, apart from the local files' contents
/// ([`content_changes`]): the pipeline, segflow, the variables (as shown: a secret's value
/// is never compared), and the files listed now by URL, size and, for remote files, ETag
/// (else modification time). A local file of the same size is judged by its content.
pub fn changes(
    manifest: &Manifest,
    pipeline_hash: &str,
    vars: &BTreeMap<String, String>,
    listed: &[ManifestInput],
) -> Vec<String> {
    let run = &manifest.run_id;
    let mut changes = Vec::new();
    if manifest.pipeline_hash != pipeline_hash {
        changes.push(format!(
            "the pipeline (its YAML or a SQL file it reads) changed since run `{run}`"
        ));
    }
    let version = env!("CARGO_PKG_VERSION");
    if manifest.segflow_version != version {
        changes.push(format!(
            "segflow {version} is not segflow {}, which wrote run `{run}`",
            manifest.segflow_version
        ));
    }
    let names: BTreeSet<&String> = manifest.vars.keys().chain(vars.keys()).collect();
    for name in names {
        match (manifest.vars.get(name), vars.get(name)) {
            (Some(before), Some(now)) if before != now => {
                changes.push(format!("variable `{name}` is `{now}`, was `{before}`"));
            }
            (Some(_), None) => changes.push(format!("variable `{name}` is no longer set")),
            (None, Some(now)) => changes.push(format!("variable `{name}` is new: `{now}`")),
            _ => {}
        }
    }
    if manifest.schema_version < 3 {
        changes.push(format!(
            "run `{run}` records no input files (its manifest is schema version {})",
            manifest.schema_version
        ));
        return changes;
    }
    let before: BTreeMap<&str, &ManifestInput> = manifest
        .inputs
        .iter()
        .map(|input| (input.url.as_str(), input))
        .collect();
    let now: BTreeSet<&str> = listed.iter().map(|input| input.url.as_str()).collect();
    let mut files = Vec::new();
    for input in listed {
        let url = &input.url;
        match before.get(url.as_str()) {
            None => files.push(format!("input file {url} is new")),
            Some(old) if old.bytes != input.bytes => files.push(format!(
                "input file {url} has {} bytes, had {}",
                input.bytes, old.bytes
            )),
            // Judged by its content once hashed.
            Some(old) if old.content_hash.is_some() => {}
            Some(old) => match (&old.e_tag, &input.e_tag) {
                (Some(before), Some(now)) if before != now => {
                    files.push(format!("input file {url} has a new ETag"));
                }
                (Some(_), Some(_)) => {}
                _ if old.last_modified != input.last_modified => files.push(format!(
                    "input file {url} was modified at {}",
                    input.last_modified
                )),
                _ => {}
            },
        }
    }
    for url in before.keys().filter(|url| !now.contains(*url)) {
        files.push(format!("input file {url} is gone"));
    }
    changes.extend(named_and_counted(files));
    changes
}

/// The local files whose content differs from what the latest published run read; only
/// meaningful once [`changes`] found nothing else.
pub fn content_changes(manifest: &Manifest, hashed: &[ManifestInput]) -> Vec<String> {
    let before: BTreeMap<&str, &ManifestInput> = manifest
        .inputs
        .iter()
        .map(|input| (input.url.as_str(), input))
        .collect();
    let changed = hashed
        .iter()
        .filter(|input| {
            before.get(input.url.as_str()).is_some_and(|old| {
                old.content_hash.is_some() && old.content_hash != input.content_hash
            })
        })
        .map(|input| format!("input file {}: its content changed", input.url))
        .collect();
    named_and_counted(changed)
}

fn named_and_counted(mut files: Vec<String>) -> Vec<String> {
    if files.len() > FILES_NAMED {
        let more = files.len() - FILES_NAMED;
        files.truncate(FILES_NAMED);
        files.push(format!("and {more} more input files"));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(url: &str, bytes: u64, e_tag: Option<&str>, hash: Option<&str>) -> ManifestInput {
        ManifestInput {
            source: "orders".to_string(),
            url: url.to_string(),
            bytes,
            last_modified: "2011-12-10T06:00:00Z".to_string(),
            e_tag: e_tag.map(str::to_string),
            content_hash: hash.map(str::to_string),
        }
    }

    fn manifest(inputs: Vec<ManifestInput>) -> Manifest {
        Manifest {
            schema_version: 3,
            run_id: "2011-12-09".to_string(),
            pipeline: "p".to_string(),
            pipeline_hash: "sha256:aa".to_string(),
            segflow_version: env!("CARGO_PKG_VERSION").to_string(),
            vars: [("as_of".to_string(), "2011-12-09".to_string())].into(),
            started_at: String::new(),
            ended_at: String::new(),
            tables: Vec::new(),
            files: Vec::new(),
            metrics: Vec::new(),
            inputs,
            segment_model: None,
        }
    }

    fn vars(as_of: &str) -> BTreeMap<String, String> {
        [("as_of".to_string(), as_of.to_string())].into()
    }

    #[test]
    fn the_same_pipeline_variables_and_files_are_no_change() {
        let files = vec![
            input("s3://b/a.csv", 10, Some("\"e1\""), None),
            input("file:///d/b.csv", 20, Some("x"), Some("sha256:01")),
        ];
        let before = manifest(files.clone());
        assert!(changes(&before, "sha256:aa", &vars("2011-12-09"), &files).is_empty());
        assert!(content_changes(&before, &files).is_empty());
    }

    #[test]
    fn each_kind_of_change_is_named() {
        let before = manifest(vec![
            input("s3://b/a.csv", 10, Some("\"e1\""), None),
            input("s3://b/gone.csv", 10, Some("\"e2\""), None),
            input("file:///d/b.csv", 20, Some("x"), Some("sha256:01")),
        ]);
        let now = vec![
            input("s3://b/a.csv", 10, Some("\"e9\""), None),
            input("file:///d/b.csv", 21, Some("y"), None),
            input("file:///d/new.csv", 5, Some("z"), None),
        ];
        assert_eq!(
            changes(&before, "sha256:bb", &vars("2011-12-10"), &now),
            [
                "the pipeline (its YAML or a SQL file it reads) changed since run `2011-12-09`",
                "variable `as_of` is `2011-12-10`, was `2011-12-09`",
                "input file s3://b/a.csv has a new ETag",
                "input file file:///d/b.csv has 21 bytes, had 20",
                "input file file:///d/new.csv is new",
                "input file s3://b/gone.csv is gone",
            ]
        );
    }

    #[test]
    fn a_local_file_of_the_same_size_is_judged_by_its_content_not_its_time() {
        let before = manifest(vec![input(
            "file:///d/b.csv",
            20,
            Some("x"),
            Some("sha256:01"),
        )]);
        let mut touched = input("file:///d/b.csv", 20, Some("y"), None);
        touched.last_modified = "2011-12-11T00:00:00Z".to_string();
        assert!(
            changes(
                &before,
                "sha256:aa",
                &vars("2011-12-09"),
                &[touched.clone()]
            )
            .is_empty()
        );
        touched.content_hash = Some("sha256:01".to_string());
        assert!(content_changes(&before, &[touched.clone()]).is_empty());
        touched.content_hash = Some("sha256:02".to_string());
        assert_eq!(
            content_changes(&before, &[touched]),
            ["input file file:///d/b.csv: its content changed"]
        );
    }

    #[test]
    fn a_store_without_etags_is_judged_by_modification_time() {
        let before = manifest(vec![input("http://h/a.csv", 10, None, None)]);
        let mut now = input("http://h/a.csv", 10, None, None);
        assert!(changes(&before, "sha256:aa", &vars("2011-12-09"), &[now.clone()]).is_empty());
        now.last_modified = "2011-12-11T00:00:00Z".to_string();
        assert_eq!(
            changes(&before, "sha256:aa", &vars("2011-12-09"), &[now]),
            ["input file http://h/a.csv was modified at 2011-12-11T00:00:00Z"]
        );
    }

    #[test]
    fn a_manifest_without_inputs_always_differs_and_many_files_are_counted() {
        let mut old = manifest(Vec::new());
        old.schema_version = 2;
        assert_eq!(
            changes(&old, "sha256:aa", &vars("2011-12-09"), &[]),
            ["run `2011-12-09` records no input files (its manifest is schema version 2)"]
        );
        let many: Vec<ManifestInput> = (0..8)
            .map(|i| input(&format!("s3://b/{i}.csv"), 1, None, None))
            .collect();
        let listed = changes(
            &manifest(Vec::new()),
            "sha256:aa",
            &vars("2011-12-09"),
            &many,
        );
        assert_eq!(listed.len(), FILES_NAMED + 1);
        assert_eq!(listed[FILES_NAMED], "and 3 more input files");
    }
}
