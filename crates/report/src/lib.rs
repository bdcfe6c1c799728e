//! segflow-report: a run as one HTML page a person reads (`report.html`).
//!
//! The report is rendered from a run's files alone ([`RunFiles`]: the manifest, the run's
//! account `run.json`, `model.json` and the Parquet tables), so it shows what a warehouse
//! would load, and an old run can be rendered again. The engine renders it from the
//! staged run just before publishing and writes it into the run; `segflow report` renders
//! it from the published run, byte for byte the same.
//!
//! The page is self-contained: inline CSS and SVG charts (`svg.rs`, plain SVG written
//! here), no JavaScript, no fonts or other files to fetch, so it opens from a disk, a
//! bucket or an e-mail attachment. Its bytes depend on the run's files only: no clock,
//! no random ids, no hash-map order.

mod account;
mod actions;
mod html;
mod page;
mod run_data;
mod stats;
mod svg;

pub use actions::DEFAULT_ACTIONS;
pub use run_data::RUN_ACCOUNT_FILE;
use segflow_publish::{RunFiles, RunFilesError};

/// The report's file name in a run's version folder.
pub const REPORT_FILE: &str = "report.html";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Run(#[from] RunFilesError),
    #[error("{url} cannot be read: {message}")]
    Unreadable { url: String, message: String },
}

/// The report of the run whose files are `run`.
pub async fn render(run: &RunFiles) -> Result<String, ReportError> {
    let data = run_data::RunData::load(run).await?;
    Ok(page::render(&data))
}
