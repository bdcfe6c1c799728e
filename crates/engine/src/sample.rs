//! The start of a step test (`segflow test --generate`): the first rows of each table a
//! step reads, from a real run of the steps before it. Nothing is published.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use segflow_pipeline::Pipeline;

use crate::columns::{ReadColumns, used_columns};
use crate::execution::InProcess;
use crate::progress::Progress;
use crate::select::{Selection, select_steps};
use crate::session::RunResources;
use crate::{EngineError, Result, check, session, sources, steps, stores};

/// The first `rows` rows of each table `step` reads, from a real run of the steps before
/// it (nothing is published), with only the columns the step uses: the start of a test.
pub async fn sample_inputs(
    pipeline: &Pipeline,
    step: &str,
    rows: usize,
) -> Result<Vec<(String, RecordBatch)>> {
    let graph = check::check(pipeline).await?;
    let resources = RunResources::new(&pipeline.resources, &Default::default());
    let ctx = session::session(&resources)?;
    let results = session::step_results(&ctx, &resources)?;
    stores::register_stores(&ctx, pipeline)?;
    stores::preflight(&ctx, &pipeline.stores).await?;
    let source_rejects = sources::register_sources(&ctx, &pipeline.sources)
        .await?
        .rejects;
    let quarantined_sources = source_rejects
        .iter()
        .map(|rejects| (rejects.source.clone(), rejects.rows_out))
        .collect();
    let only = [segflow_plan::Selector {
        name: step.to_string(),
        upstream: false,
        downstream: false,
    }];
    let picked = Selection::Picked {
        select: &only,
        exclude: &[],
    };
    let mut selected = select_steps(&graph, picked)?;
    // Every other step is read by this one, so comes before it.
    let target = selected.pop().expect("a selected step is run");
    let settings = steps::StepsSettings {
        results: &results,
        execution: &InProcess,
        max_concurrent: crate::RunOptions::default().max_concurrent_steps,
        keep: None,
        read_columns: &ReadColumns::default(),
        profile: false,
        progress: &Progress::default(),
    };
    steps::run_steps(&ctx, &selected, settings, quarantined_sources).await?;
    let step_error = |error: DataFusionError| EngineError::step(&target.step, error);
    let used = match &target.step.validate {
        Some(_) => HashMap::new(),
        None => used_columns(&ctx, &target.step.sql)
            .await
            .map_err(step_error)?,
    };
    let mut samples = Vec::new();
    for table in &target.reads {
        let mut frame = ctx.table(table.as_str()).await.map_err(step_error)?;
        if let Some(columns) = used.get(table).filter(|columns| !columns.is_empty()) {
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            frame = frame.select_columns(&names).map_err(step_error)?;
        }
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame
            .limit(0, Some(rows))
            .map_err(step_error)?
            .collect()
            .await
            .map_err(step_error)?;
        let batch = arrow::compute::concat_batches(&schema, &batches)
            .map_err(|error| step_error(error.into()))?;
        samples.push((table.clone(), batch));
    }
    Ok(samples)
}
