//! What a run writes about itself into its version, last before publishing: its account
//! (`run.json`: the run report as it stands then, secrets masked) and the page rendered
//! from the staged run (`report.html`). Both are staged like every other file, so a run
//! that fails never leaves either, and the page shows exactly the files being published.

use segflow_pipeline::Pipeline;
use segflow_publish::{RunInfo, Staging};
use segflow_report::{REPORT_FILE, RUN_ACCOUNT_FILE};

use crate::error::Result;
use crate::report::RunReport;

/// Stages `run.json` from `account` and then `report.html` from everything staged.
pub async fn stage_account_and_report(
    staging: &mut Staging,
    pipeline: &Pipeline,
    account: &RunReport,
    info: &RunInfo,
) -> Result<()> {
    let mut json = serde_json::to_value(account).expect("a run report serialises");
    pipeline.masks.apply_json(&mut json);
    let bytes = serde_json::to_vec_pretty(&json).expect("JSON serialises");
    staging.write_bytes(RUN_ACCOUNT_FILE, bytes).await?;
    let started = std::time::Instant::now();
    let page = segflow_report::render(&staging.run_files(info)).await?;
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        bytes = page.len(),
        "rendered {REPORT_FILE}"
    );
    staging.write_bytes(REPORT_FILE, page.into_bytes()).await?;
    Ok(())
}

/// The report of the published run `run_id` in `folder`, rendered again from its files.
pub async fn render_published(
    folder: &segflow_publish::OutputFolder,
    run_id: &str,
) -> Result<String> {
    let run = folder
        .run_files(run_id)
        .await
        .map_err(segflow_report::ReportError::from)?;
    Ok(segflow_report::render(&run).await?)
}

/// The run `_LATEST.json` of `folder` names.
pub async fn latest_run_id(folder: &segflow_publish::OutputFolder) -> Result<String> {
    match folder.latest().await? {
        Some(latest) => Ok(latest.run_id),
        None => Err(segflow_report::ReportError::Run(
            segflow_publish::RunFilesError::NothingPublished {
                output: folder.url.clone(),
            },
        )
        .into()),
    }
}
