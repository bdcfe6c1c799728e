//! The start of a step test (`segflow test --generate`): the first rows of each table a
//! step reads, from a real run of the steps before it. Nothing is published.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use segflow_pipeline::Pipeline;

use crate::columns::used_columns;
use crate::preview::run_unpublished;
use crate::progress::Progress;
use crate::select::{Selection, select_steps};
use crate::{EngineError, Result, check};

/// The first `rows` rows of each table `step` reads, from a real run of the steps before
/// it (nothing is published), with only the columns the step uses: the start of a test.
pub async fn sample_inputs(
    pipeline: &Pipeline,
    step: &str,
    rows: usize,
) -> Result<Vec<(String, RecordBatch)>> {
    let graph = check::check(pipeline).await?;
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
    // Every other step is read by this one, so comes before it. The target itself is not
    // run: its inputs are what a test gives.
    let target = selected.pop().expect("a selected step is run");
    let ran = run_unpublished(
        pipeline,
        &selected,
        &Default::default(),
        &Progress::default(),
    )
    .await?;
    let ctx = &ran.ctx;
    let step_error = |error: DataFusionError| EngineError::step(&target.step, error);
    let used = match &target.step.validate {
        Some(_) => HashMap::new(),
        None => used_columns(ctx, &target.step.sql)
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
