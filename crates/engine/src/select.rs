//! Which steps a run runs: all of them, one and the steps it reads from (`--select`), or
//! the steps up to one in plan order (`--until`).

use segflow_plan::{PlannedStep, StepGraph};

use crate::{EngineError, Result};

/// The steps a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection<'a> {
    All,
    /// This step and the steps it needs (`--select`).
    With(&'a str),
    /// The steps up to and including this one in plan order (`--until`).
    Until(&'a str),
}

/// The steps `selection` asks for, in plan order.
pub fn select_steps<'a>(
    graph: &'a StepGraph,
    selection: Selection<'_>,
) -> Result<Vec<&'a PlannedStep>> {
    let position = |option: &'static str, name: &str| {
        graph
            .steps
            .iter()
            .position(|planned| planned.step.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = graph.steps.iter().map(|p| p.step.name.as_str()).collect();
                EngineError::UnknownStep {
                    option,
                    name: name.to_string(),
                    hint: segflow_pipeline::did_you_mean(name, &names),
                }
            })
    };
    match selection {
        Selection::All => Ok(graph.steps.iter().collect()),
        Selection::With(name) => {
            let target = position("--select", name)?;
            // Walk back from the target through what each step reads.
            let mut needed = vec![false; graph.steps.len()];
            needed[target] = true;
            for index in (0..=target).rev() {
                if !needed[index] {
                    continue;
                }
                for table in &graph.steps[index].reads {
                    if let Some(dep) = graph.steps.iter().position(|p| &p.step.name == table) {
                        needed[dep] = true;
                    }
                }
            }
            Ok(graph
                .steps
                .iter()
                .zip(needed)
                .filter_map(|(planned, needed)| needed.then_some(planned))
                .collect())
        }
        Selection::Until(name) => {
            let last = position("--until", name)?;
            Ok(graph.steps[..=last].iter().collect())
        }
    }
}
