//! `segflow plan`: the step graph as text for people, JSON for tools, DOT for pictures.

use segflow_pipeline::{Pipeline, Source};
use segflow_plan::{Chosen, PlannedStep, StepGraph};
use serde_json::json;

/// The part of the plan selectors picked (all of it without selectors).
pub struct Shown<'a> {
    pipeline: &'a Pipeline,
    sources: Vec<&'a Source>,
    /// With each step's place in the whole plan.
    steps: Vec<(usize, &'a PlannedStep)>,
    /// Whether the segment stage is shown: its input is picked.
    segment: bool,
    /// Whether part of the graph is left out.
    partial: bool,
}

impl<'a> Shown<'a> {
    pub fn new(pipeline: &'a Pipeline, graph: &'a StepGraph, chosen: &Chosen) -> Shown<'a> {
        let sources: Vec<&Source> = pipeline
            .sources
            .iter()
            .filter(|source| chosen.contains(&source.name))
            .collect();
        let steps: Vec<(usize, &PlannedStep)> = graph
            .steps
            .iter()
            .enumerate()
            .filter(|(_, planned)| chosen.contains(&planned.step.name))
            .collect();
        Shown {
            pipeline,
            partial: sources.len() < pipeline.sources.len() || steps.len() < graph.steps.len(),
            sources,
            steps,
            segment: chosen.contains(&pipeline.segment.input),
        }
    }
}

pub fn text(shown: &Shown) -> String {
    let Shown {
        pipeline,
        sources,
        steps,
        ..
    } = shown;
    let width = sources
        .iter()
        .map(|source| source.name.len())
        .chain(steps.iter().map(|(_, planned)| planned.step.name.len()))
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "pipeline {}: {} source{}, {} step{}{}\n",
        pipeline.name,
        sources.len(),
        plural(sources.len()),
        steps.len(),
        plural(steps.len()),
        if shown.partial { " selected" } else { "" }
    );
    for source in sources {
        out.push_str(&format!(
            "  level 0  {:<width$}  source    {} {}\n",
            source.name,
            source.format.as_str(),
            pipeline.redact(source.location.url.as_str())
        ));
    }
    for (_, planned) in steps {
        out.push_str(&format!(
            "  level {}  {:<width$}  {:<8}  reads {}\n",
            planned.level,
            planned.step.name,
            planned.step.kind.as_str(),
            planned.reads.join(", ")
        ));
    }
    let segment = &pipeline.segment;
    if shown.segment {
        out.push_str(&format!(
            "  segment  {} on {} (k={}, seed {}) -> {}\n",
            segment.input,
            segment.features.join(", "),
            segment.k,
            segment.seed,
            pipeline.redact(segment.output.url.as_str())
        ));
    }
    out.push_str("Steps on the same level do not depend on each other and run concurrently.");
    out
}

/// The plan as JSON; the caller masks its strings. `order` is each step's place in the
/// whole plan, selected or not.
pub fn json(shown: &Shown) -> serde_json::Value {
    let pipeline = shown.pipeline;
    json!({
        "pipeline": pipeline.name,
        "sources": shown.sources.iter().map(|source| json!({
            "name": source.name,
            "format": source.format.as_str(),
            "url": pipeline.redact(source.location.url.as_str()),
        })).collect::<Vec<_>>(),
        "steps": shown.steps.iter().map(|(order, planned)| json!({
            "name": planned.step.name,
            "kind": planned.step.kind.as_str(),
            "sql_file": planned.step.sql_file.as_ref().map(|file| file.display().to_string()),
            "reads": planned.reads,
            "writes": planned.step.name,
            "order": order,
            "level": planned.level,
        })).collect::<Vec<_>>(),
        "segment": shown.segment.then(|| json!({
            "input": pipeline.segment.input,
            "key": pipeline.segment.key,
            "features": pipeline.segment.features,
            "k": pipeline.segment.k,
            "seed": pipeline.segment.seed,
            "output": pipeline.redact(pipeline.segment.output.url.as_str()),
        })),
    })
}

/// Graphviz: sources as boxes, steps as ellipses, the segment stage as a double octagon.
pub fn dot(shown: &Shown) -> String {
    let pipeline = shown.pipeline;
    let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n", pipeline.name);
    for source in &shown.sources {
        out.push_str(&format!(
            "  \"{}\" [shape=box, label=\"{}\\n{}\"];\n",
            source.name,
            source.name,
            source.format.as_str()
        ));
    }
    for (_, planned) in &shown.steps {
        out.push_str(&format!(
            "  \"{}\" [shape=ellipse, label=\"{}\\n{}\"];\n",
            planned.step.name,
            planned.step.name,
            planned.step.kind.as_str()
        ));
        for table in &planned.reads {
            out.push_str(&format!("  \"{table}\" -> \"{}\";\n", planned.step.name));
        }
    }
    if shown.segment {
        out.push_str(&format!(
            "  \"segment\" [shape=doubleoctagon, label=\"segment\\nk={}\"];\n  \"{}\" -> \"segment\";\n",
            pipeline.segment.k, pipeline.segment.input
        ));
    }
    out.push('}');
    out
}

fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// Steps as they will run, each under a comment naming it, its kind and where its SQL is.
pub fn compiled(steps: &[segflow_engine::CompiledStep]) -> String {
    steps
        .iter()
        .map(|step| {
            format!(
                "-- step {} ({}, {})\n{}",
                step.name, step.kind, step.origin, step.sql
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}
