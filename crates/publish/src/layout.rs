//! Where each file of a run is published: a table's files in the table's own folder,
//! partitioned by run (`<table>/run_id=<id>/part-NNNNN-<attempt>.parquet`), so that a
//! warehouse declares one external table over each; the run's other files (manifest,
//! models) in its version folder (`run_id=<id>/attempt=<attempt>/`).

use crate::{ATTEMPT_PREFIX, RUN_DIR_PREFIX, STAGING_DIR};

/// `<table>/run_id=<run_id>/`: the run's partition of a table, relative to the output
/// folder.
pub fn table_partition(table: &str, run_id: &str) -> String {
    format!("{table}/{RUN_DIR_PREFIX}{run_id}/")
}

/// The name of a table's `part`-th file published by `attempt`. The attempt in the name
/// keeps a rerun's files apart from those of the version it replaces, which stay whole
/// until the rerun is committed (as Spark's `part-NNNNN-<uuid>` names do).
pub fn part_name(part: usize, attempt: &str) -> String {
    format!("part-{part:05}-{attempt}.parquet")
}

/// The run and attempt of a published table file `name` (relative to the output folder:
/// `<table>/run_id=<id>/[<column>=<value>/...]<part>`); `None` for anything else.
pub fn table_file_run(name: &str) -> Option<(&str, &str)> {
    let (dirs, file) = name.rsplit_once('/')?;
    let folders: Vec<&str> = dirs.split('/').collect();
    // The run's partition: the last `run_id=` folder, after the table's and before the
    // Hive folders of the table's own partition columns.
    let at = folders
        .iter()
        .rposition(|folder| folder.starts_with(RUN_DIR_PREFIX))?;
    let table = &folders[..at];
    if table.is_empty()
        || table[0].starts_with(RUN_DIR_PREFIX)
        || table[0].starts_with(STAGING_DIR)
        || !folders[at + 1..].iter().all(|folder| folder.contains('='))
    {
        return None;
    }
    let run_id = folders[at].strip_prefix(RUN_DIR_PREFIX)?;
    let rest = file.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (number, attempt) = rest.split_once('-')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || attempt.is_empty() {
        return None;
    }
    Some((run_id, attempt))
}

/// A table name a run may publish: `/`-separated folder names (`segments`,
/// `rejects/orders`), none empty, hidden (`_`, `.`) or a run's (`run_id=`, `attempt=`), so
/// that the table's folder can never be mistaken for a run's, nor skipped by a loader.
pub fn table_name_problem(table: &str) -> Option<String> {
    let bad = table.split('/').find(|part| {
        part.is_empty()
            || part.starts_with('_')
            || part.starts_with('.')
            || part.contains('=')
            || part.starts_with(ATTEMPT_PREFIX)
    });
    bad.map(|part| {
        format!("is not a name segflow can publish a table under: `{part}` would not be read as a table folder")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_files_are_found_by_their_partition_and_name() {
        let attempt = "20261203T101010123Z-0a1b2c3d";
        let name = format!(
            "{}{}",
            table_partition("rejects/orders", "2011-12-10"),
            part_name(3, attempt)
        );
        assert_eq!(
            name,
            "rejects/orders/run_id=2011-12-10/part-00003-20261203T101010123Z-0a1b2c3d.parquet"
        );
        assert_eq!(table_file_run(&name), Some(("2011-12-10", attempt)));
        let partitioned = format!(
            "orders/run_id=2011-12-10/country=UK/year=2011/{}",
            part_name(0, attempt)
        );
        assert_eq!(table_file_run(&partitioned), Some(("2011-12-10", attempt)));
        for other in [
            "segments/run_id=a/_SUCCESS",
            "segments/run_id=a/part-00000.parquet",
            "segments/run_id=a/part-x-y.parquet",
            "run_id=a/attempt=b/segments/part-00000-b.parquet",
            "_staging/a/attempt=b/segments/part-00000-b.parquet",
            "segments/part-00000-b.parquet",
            "segments/run_id=a/extra/part-00000-b.parquet",
            "_LATEST.json",
        ] {
            assert_eq!(table_file_run(other), None, "{other}");
        }
    }

    #[test]
    fn table_names_are_plain_folders() {
        assert_eq!(table_name_problem("segments"), None);
        assert_eq!(table_name_problem("rejects/orders"), None);
        for bad in ["_rejects/x", "run_id=x", "a//b", "", ".hidden", "attempt=1"] {
            assert!(table_name_problem(bad).is_some(), "{bad}");
        }
    }
}
