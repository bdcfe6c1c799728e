//! `segflow plan`: the step graph as text for people, JSON for tools, DOT for pictures.

use segflow_pipeline::Pipeline;
use segflow_plan::StepGraph;
use serde_json::json;

pub fn text(pipeline: &Pipeline, graph: &StepGraph) -> String {
    let width = pipeline
        .sources
        .iter()
        .map(|source| source.name.len())
        .chain(graph.steps.iter().map(|planned| planned.step.name.len()))
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "pipeline {}: {} source{}, {} step{}\n",
        pipeline.name,
        pipeline.sources.len(),
        plural(pipeline.sources.len()),
        graph.steps.len(),
        plural(graph.steps.len())
    );
    for source in &pipeline.sources {
        out.push_str(&format!(
            "  level 0  {:<width$}  source    {} {}\n",
            source.name,
            source.format.as_str(),
            pipeline.redact(source.location.url.as_str())
        ));
    }
    for planned in &graph.steps {
        out.push_str(&format!(
            "  level {}  {:<width$}  {:<8}  reads {}\n",
            planned.level,
            planned.step.name,
            planned.step.kind.as_str(),
            planned.reads.join(", ")
        ));
    }
    let segment = &pipeline.segment;
    out.push_str(&format!(
        "  segment  {} on {} (k={}, seed {}) -> {}\n",
        segment.input,
        segment.features.join(", "),
        segment.k,
        segment.seed,
        pipeline.redact(segment.output.url.as_str())
    ));
    out.push_str("Steps on the same level do not depend on each other and run concurrently.");
    out
}

/// The plan as JSON; the caller masks its strings.
pub fn json(pipeline: &Pipeline, graph: &StepGraph) -> serde_json::Value {
    json!({
        "pipeline": pipeline.name,
        "sources": pipeline.sources.iter().map(|source| json!({
            "name": source.name,
            "format": source.format.as_str(),
            "url": pipeline.redact(source.location.url.as_str()),
        })).collect::<Vec<_>>(),
        "steps": graph.steps.iter().enumerate().map(|(order, planned)| json!({
            "name": planned.step.name,
            "kind": planned.step.kind.as_str(),
            "sql_file": planned.step.sql_file.as_ref().map(|file| file.display().to_string()),
            "reads": planned.reads,
            "writes": planned.step.name,
            "order": order,
            "level": planned.level,
        })).collect::<Vec<_>>(),
        "segment": {
            "input": pipeline.segment.input,
            "key": pipeline.segment.key,
            "features": pipeline.segment.features,
            "k": pipeline.segment.k,
            "seed": pipeline.segment.seed,
            "output": pipeline.redact(pipeline.segment.output.url.as_str()),
        },
    })
}

/// Graphviz: sources as boxes, steps as ellipses, the segment stage as a double octagon.
pub fn dot(pipeline: &Pipeline, graph: &StepGraph) -> String {
    let mut out = format!("digraph \"{}\" {{\n  rankdir=LR;\n", pipeline.name);
    for source in &pipeline.sources {
        out.push_str(&format!(
            "  \"{}\" [shape=box, label=\"{}\\n{}\"];\n",
            source.name,
            source.name,
            source.format.as_str()
        ));
    }
    for planned in &graph.steps {
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
    out.push_str(&format!(
        "  \"segment\" [shape=doubleoctagon, label=\"segment\\nk={}\"];\n  \"{}\" -> \"segment\";\n}}",
        pipeline.segment.k, pipeline.segment.input
    ));
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
