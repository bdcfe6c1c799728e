//! `segflow plan`: the step graph as text for people, JSON for tools, DOT for pictures.

use segflow_pipeline::{Pipeline, Segment, Source, Value};
use segflow_plan::{Chosen, PlannedStep, StepGraph};
use serde_json::json;

/// The part of the plan selectors picked (all of it without selectors).
pub struct Shown<'a> {
    pipeline: &'a Pipeline,
    sources: Vec<&'a Source>,
    /// With each step's place in the whole plan.
    steps: Vec<(usize, &'a PlannedStep)>,
    /// The segment stage, when its input is picked.
    segment: Option<&'a Segment>,
    /// The value stage, when its input is picked.
    value: Option<&'a Value>,
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
            segment: (pipeline.segment.as_ref()).filter(|segment| chosen.contains(&segment.input)),
            value: (pipeline.value.as_ref()).filter(|value| chosen.contains(&value.input)),
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
    if let Some(value) = shown.value {
        out.push_str(&format!(
            "  value    {} by {}: {}{} ({}s, {} months)\n",
            value.input,
            value.key,
            value.purchase_model.as_str(),
            if value.spend_model.is_some() {
                " + gamma_gamma"
            } else {
                ""
            },
            value.time_unit.as_str(),
            value.horizon_months
        ));
    }
    if let Some(segment) = shown.segment {
        out.push_str(&format!(
            "  segment  {} on {} (k={}, seed {})\n",
            segment.input,
            segment.features.join(", "),
            segment.k,
            segment.seed,
        ));
    }
    if shown.segment.is_some() || shown.value.is_some() {
        out.push_str(&format!(
            "  output   {}\n",
            pipeline.redact(pipeline.output.url.as_str())
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
        "value": shown.value.map(|value| json!({
            "input": value.input,
            "key": value.key,
            "purchase_model": value.purchase_model.as_str(),
            "spend_model": value.spend_model.map(|_| "gamma_gamma"),
            "time_unit": value.time_unit.as_str(),
            "horizon_months": value.horizon_months,
        })),
        "segment": shown.segment.map(|segment| json!({
            "input": segment.input,
            "key": segment.key,
            "features": segment.features,
            "k": segment.k,
            "seed": segment.seed,
        })),
        "output": pipeline.redact(pipeline.output.url.as_str()),
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
    if let Some(value) = shown.value {
        out.push_str(&format!(
            "  \"value\" [shape=doubleoctagon, label=\"value\\n{}\"];\n  \"{}\" -> \"value\";\n",
            value.purchase_model.as_str(),
            value.input
        ));
    }
    if let Some(segment) = shown.segment {
        out.push_str(&format!(
            "  \"segment\" [shape=doubleoctagon, label=\"segment\\nk={}\"];\n  \"{}\" -> \"segment\";\n",
            segment.k, segment.input
        ));
        if shown.value.is_some() {
            out.push_str("  \"value\" -> \"segment\";\n");
        }
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
