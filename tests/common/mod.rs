//! Shared by the integration tests: a throwaway copy of the project to run the real
//! `segflow` binary in, and Parquet readers for its outputs.

#![allow(dead_code)]

pub mod proxy;
pub mod seaweedfs;

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::RecordBatch;

/// The repository root (the CLI package lives two levels below it).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A temporary folder holding copies of `pipelines/`, `sql/` and `fixtures/`, so runs write
/// their outputs there and never into the working tree.
pub struct Project {
    dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Project {
    pub fn copy_of_repository() -> Project {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["pipelines", "sql", "fixtures"] {
            copy_dir(&repository().join(folder), &dir.path().join(folder));
        }
        Project { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Replaces the first `from` in the project's file `relative` (which must hold it).
    pub fn replace_in(&self, relative: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.path(relative)).unwrap();
        assert!(text.contains(from), "{relative} does not contain {from:?}");
        self.write(relative, &text.replacen(from, to, 1));
    }

    /// The example pipeline without its value stage, for tests of the segment stage that
    /// change the customer features in ways the value models refuse.
    pub fn without_value_stage(&self) {
        let path = "pipelines/customer_segments.yaml";
        let text = std::fs::read_to_string(self.path(path)).unwrap();
        let start = text
            .find("\nvalue:\n")
            .expect("the example has a value stage")
            + 1;
        let end = start + text[start..].find("\n\n").expect("a blank line ends it") + 2;
        self.write(path, &format!("{}{}", &text[..start], &text[end..]));
    }

    /// The example calibrated up to `as_of`, with each customer's purchase days in the 26
    /// weeks after counted by a step of its own (`holdout_purchases`) and given to the
    /// value stage's `evaluate`.
    pub fn calibrate_with_holdout(&self, as_of: &str) {
        let path = "pipelines/customer_segments.yaml";
        self.replace_in(
            path,
            "as_of: \"2011-12-10\"",
            &format!("as_of: \"{as_of}\""),
        );
        self.replace_in(
            path,
            "  - name: customer_features\n",
            r#"  - name: holdout_purchases
    kind: clean
    sql: |
      SELECT customer_id, count(DISTINCT CAST(invoiced_at AS DATE)) AS purchases
      FROM valid_transactions
      WHERE NOT is_refund
        AND invoiced_at >= DATE '${as_of}'
        AND invoiced_at < DATE '${as_of}' + INTERVAL '182 days'
      GROUP BY customer_id

  - name: customer_features
"#,
        );
        self.replace_in(
            "sql/retail/customer_features.sql",
            "    s.first_purchase,\n",
            "    CAST(coalesce(h.purchases, 0) AS BIGINT) AS holdout_purchases,\n    s.first_purchase,\n",
        );
        self.replace_in(
            "sql/retail/customer_features.sql",
            "LEFT JOIN customer_refunds r ON r.customer_id = s.customer_id",
            "LEFT JOIN customer_refunds r ON r.customer_id = s.customer_id\nLEFT JOIN holdout_purchases h ON h.customer_id = s.customer_id",
        );
        self.replace_in(
            path,
            "  discount_rate: 0.01\n",
            "  discount_rate: 0.01\n  evaluate: { actual_purchases: holdout_purchases, period: 26 weeks }\n",
        );
    }

    /// The names of the steps a `--report-json` file reports, in order.
    pub fn report_steps(&self, report: &str) -> Vec<String> {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.path(report)).unwrap()).unwrap();
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["name"].as_str().unwrap().to_string())
            .collect()
    }

    pub fn segflow(&self, args: &[&str]) -> Run {
        self.segflow_with_env(args, &[])
    }

    pub fn segflow_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_segflow"))
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("SEGFLOW_LOG")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Whether python3 can import `module` (a peer the tests check segflow's output with, from
/// PyPI). When it cannot: with the environment variable `require` set (as `.ci/run` sets
/// it), the test fails; otherwise it says it skips.
pub fn python_has(module: &str, require: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os(require).is_none(),
            "{require} is set but python3 cannot import {module} (pip install {module})"
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "skipped: python3 cannot import {module}; `pip install {module}` to check with it"
            );
        }
    }
    found
}

/// What the Python `script` prints as JSON, run in `dir` with `args`; its stderr on
/// failure.
pub fn python_json(dir: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let output = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The `<section id="{id}">` of a report page, whole.
pub fn report_section(html: &str, id: &str) -> String {
    let open = format!("<section id=\"{id}\">");
    let start = html
        .find(&open)
        .unwrap_or_else(|| panic!("the report has a section #{id}"));
    let end = start + html[start..].find("</section>").expect("a section ends");
    html[start..end].to_string()
}

/// The published version folder of the run `_LATEST.json` in the output folder `output`
/// names, found as the README tells a loader to: `_LATEST.json`, then the run's `_SUCCESS`.
pub fn published(output: &Path) -> PathBuf {
    let pointer = output.join("_LATEST.json");
    let text =
        std::fs::read_to_string(&pointer).unwrap_or_else(|e| panic!("{}: {e}", pointer.display()));
    let latest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let run_dir = latest["path"].as_str().expect("a path in _LATEST.json");
    let run_id = run_dir
        .strip_prefix("run_id=")
        .and_then(|rest| rest.strip_suffix('/'))
        .expect("_LATEST.json names a run folder");
    published_run(output, run_id)
}

/// The published version folder of `run_id` in the output folder `output`: the folder its
/// `run_id=<id>/_SUCCESS` names, checked to hold a manifest.
pub fn published_run(output: &Path, run_id: &str) -> PathBuf {
    let success = output.join(format!("run_id={run_id}/_SUCCESS"));
    let text =
        std::fs::read_to_string(&success).unwrap_or_else(|e| panic!("{}: {e}", success.display()));
    let commit: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a commit: {e}", success.display()));
    let version = output.join(commit["path"].as_str().expect("a path in _SUCCESS"));
    assert!(
        version.join("_MANIFEST.json").exists(),
        "{} has a manifest",
        version.display()
    );
    version
}

/// The files of `table` in the published version folder `version` (from
/// [`published`] or [`published_run`]), as its manifest lists them: where a loader finds
/// them, `<output>/<table>/run_id=<id>/part-NNNNN-<attempt>.parquet`.
pub fn table_files(version: &Path, table: &str) -> Vec<PathBuf> {
    let manifest = version.join("_MANIFEST.json");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    // The version folder is <output>/run_id=<id>/attempt=<a>/; paths are relative to <output>.
    let output = version.parent().unwrap().parent().unwrap();
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|file| file["table"].as_str() == Some(table))
        .map(|file| output.join(file["path"].as_str().unwrap()))
        .collect()
}

/// The rows of `table` in the published version folder `version`, file by file.
pub fn table(version: &Path, table: &str) -> Vec<RecordBatch> {
    let files = table_files(version, table);
    assert!(
        !files.is_empty(),
        "{} publishes a table `{table}`",
        version.display()
    );
    files.iter().flat_map(|file| read_parquet(file)).collect()
}

/// `batches` without the run's own columns (`run_id`, `as_of`), to compare the tables of
/// two runs.
pub fn without_run_columns(batches: &[RecordBatch]) -> Vec<RecordBatch> {
    batches
        .iter()
        .map(|batch| {
            let schema = batch.schema();
            let kept: Vec<usize> = (0..schema.fields().len())
                .filter(|&i| !["run_id", "as_of"].contains(&schema.field(i).name().as_str()))
                .collect();
            batch.project(&kept).unwrap()
        })
        .collect()
}

pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Every Parquet file in `dir`, in file-name order.
pub fn read_parquet_folder(dir: &Path) -> Vec<RecordBatch> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "parquet"))
        .collect();
    files.sort();
    files.iter().flat_map(|file| read_parquet(file)).collect()
}

/// The rows as text, sorted: step results carry no order, so neither do their rejects.
pub fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
    let table = arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string();
    let mut lines: Vec<String> = table.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The benchmark's pipeline over a Parquet export, beside the 30,000 lines the example's
/// fixture holds (the generator's output for these settings) as `bench/data/lines.parquet`.
pub const BENCH_PIPELINE: &str = "bench/customer_segments_parquet.yaml";

/// A copy of the project with the benchmark's pipeline and its Parquet lines in place.
pub fn bench_project() -> Project {
    let project = Project::copy_of_repository();
    project.write(
        BENCH_PIPELINE,
        &std::fs::read_to_string(repository().join(BENCH_PIPELINE)).unwrap(),
    );
    project
        .segflow(&[
            "generate",
            "bench/data/lines.parquet",
            "--format",
            "parquet",
            "--rows",
            "30000",
            "--seed",
            "42",
        ])
        .assert_exit(0);
    project
}

/// The ```yaml blocks of a Markdown text, with the line each starts on.
pub fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```yaml") => {
                current = Some((index + 2, String::new()))
            }
            (Some(_), fence) if fence.starts_with("```") => blocks.extend(current.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

pub fn is_whole_pipeline(yaml: &str) -> bool {
    ["name:", "sources:", "segment:"]
        .iter()
        .all(|key| yaml.lines().any(|line| line.starts_with(key)))
}

/// Every whole pipeline in README.md and docs/*.md: (file, line its block starts on, YAML).
pub fn doc_pipelines() -> Vec<(PathBuf, usize, String)> {
    let mut docs = vec![repository().join("README.md")];
    for entry in std::fs::read_dir(repository().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    let mut pipelines = Vec::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (line, yaml) in yaml_blocks(&text) {
            if is_whole_pipeline(&yaml) {
                pipelines.push((doc.clone(), line, yaml));
            }
        }
    }
    pipelines
}
