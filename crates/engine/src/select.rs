//! Which steps a run runs: all of them, those selectors pick with what they read
//! (`--select`, `--exclude`), or the steps up to one in plan order (`--until`).

use segflow_plan::{PlannedStep, Selector, StepGraph};

use crate::{EngineError, Result};

/// The steps a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'a> {
    All,
    /// What the selectors pick, with every step those read (`--select`, `--exclude`).
    Picked {
        select: &'a [Selector],
        exclude: &'a [Selector],
    },
    /// The steps up to and including this one in plan order (`--until`).
    Until(&'a str),
}

/// The steps `selection` asks for, in plan order.
pub fn select_steps<'a>(
    graph: &'a StepGraph,
    selection: Selection<'_>,
) -> Result<Vec<&'a PlannedStep>> {
    match selection {
        Selection::All => Ok(graph.steps.iter().collect()),
        Selection::Picked { select, exclude } => {
            let chosen = segflow_plan::choose(graph, select, exclude)?;
            Ok(chosen.with_inputs(graph)?)
        }
        Selection::Until(name) => {
            let last = graph
                .steps
                .iter()
                .position(|planned| planned.step.name == name)
                .ok_or_else(|| {
                    let names: Vec<&str> =
                        graph.steps.iter().map(|p| p.step.name.as_str()).collect();
                    EngineError::UnknownStep {
                        option: "--until",
                        name: name.to_string(),
                        hint: segflow_pipeline::did_you_mean(name, &names),
                    }
                })?;
            Ok(graph.steps[..=last].iter().collect())
        }
    }
}
