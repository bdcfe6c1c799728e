//! `segflow init DIR`: a project that passes `check`, `run` and `test` as it is written.
//! The files are the templates under `templates/init/`, compiled in; the data is
//! generated, so the project shows the dirt a real export has.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Invoice lines the project's data set has: enough customers for four segments, small
/// enough to run in a second.
const ROWS: u64 = 5_000;
const SEED: u64 = 42;

/// (path in the project, contents)
const TEMPLATES: &[(&str, &str)] = &[
    (
        "pipelines/segments.yaml",
        include_str!("../templates/init/segments.yaml"),
    ),
    (
        "sql/clean_transactions.sql",
        include_str!("../templates/init/clean_transactions.sql"),
    ),
    (
        "sql/customer_features.sql",
        include_str!("../templates/init/customer_features.sql"),
    ),
    (
        "pipelines/tests/segments/steps.yaml",
        include_str!("../templates/init/steps.yaml"),
    ),
    (".gitignore", include_str!("../templates/init/gitignore")),
];

/// Writes the project into `dir` (new, or an empty folder) and returns the files written.
pub fn scaffold(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("{} exists and is not a readable folder", dir.display()))?;
        if entries.next().is_some() {
            anyhow::bail!(
                "{} is not empty: segflow init writes a new project into a new or empty folder",
                dir.display()
            );
        }
    }
    let name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map_or_else(
            || "segments".to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
    let readme = include_str!("../templates/init/README.md")
        .replace("{name}", &name)
        .replace("{rows}", &crate::summary::thousands(ROWS));
    let schema = serde_json::to_string_pretty(&segflow_pipeline::json_schema())? + "\n";
    let mut written = Vec::new();
    let files = TEMPLATES
        .iter()
        .map(|(path, text)| (*path, text.to_string()))
        .chain([("README.md", readme), ("segflow.schema.json", schema)]);
    for (path, text) in files {
        let path = dir.join(path);
        write(&path, text.as_bytes())?;
        written.push(path);
    }
    let data = dir.join("data/transactions.csv");
    let mut bytes = Vec::new();
    segflow_datagen::write(
        &mut bytes,
        segflow_datagen::OutputFormat::Csv,
        &segflow_datagen::GeneratorConfig::new(ROWS, SEED),
    )
    .context("generating the project's data")?;
    write(&data, &bytes)?;
    written.push(data);
    Ok(written)
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the folder {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// What `init` prints: the files, then the commands to try.
pub fn next_steps(dir: &Path, written: &[PathBuf]) -> String {
    let mut out = format!("wrote a segflow project in {}:\n", dir.display());
    for path in written {
        let shown = path.strip_prefix(dir).unwrap_or(path);
        out.push_str(&format!("  {}\n", shown.display()));
    }
    out.push_str(&format!(
        "next:\n  cd {}\n  segflow check pipelines/segments.yaml\n  segflow run pipelines/segments.yaml\n  segflow test pipelines/segments.yaml",
        dir.display()
    ));
    out
}
