//! `segflow plan`: the step graph as text for people, JSON for tools, DOT for pictures.

use segflow_engine::{Bucketing, Runs, Whole};
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
    /// With a `partition_key`: which steps keep customers apart on it, or why that could
    /// not be analysed (the pipeline does not check).
    pub bucketing: Option<Result<Bucketing, String>>,
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
            bucketing: None,
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
    if let Some(bucketing) = &shown.bucketing {
        out.push_str(&bucketing_text(shown, bucketing, width));
    }
    out.push_str("Steps on the same level do not depend on each other and run concurrently.");
    out
}

/// Per split source its key, per step whether it keeps customers apart and, when not, why.
fn bucketing_text(shown: &Shown, bucketing: &Result<Bucketing, String>, width: usize) -> String {
    let bucketing = match bucketing {
        Ok(bucketing) => bucketing,
        Err(error) => {
            let first = error.lines().next().unwrap_or_default();
            return format!(
                "bucketing by partition_key: not analysed, the pipeline does not check ({first}); `segflow check` lists every problem\n"
            );
        }
    };
    let mut out =
        String::from("bucketing by partition_key (customers kept apart, bucket by bucket):\n");
    for source in &shown.sources {
        let Some((_, key)) = bucketing
            .sources
            .iter()
            .find(|(name, _)| *name == source.name)
        else {
            out.push_str(&format!(
                "  {:<width$}  whole     no key column: every bucket reads it all\n",
                source.name
            ));
            continue;
        };
        let parsed = match &bucketing.parses_key_in {
            Some(step) => format!(" (text read as BIGINT, as {step} casts it)"),
            None => String::new(),
        };
        let nulls = if bucketing.spreads_null_keys {
            "; rows without a key dealt out over the buckets, as no step groups them"
        } else {
            "; rows without a key in the first bucket"
        };
        out.push_str(&format!(
            "  {:<width$}  split     by {key}{parsed}{nulls}\n",
            source.name
        ));
    }
    for (_, planned) in &shown.steps {
        let name = &planned.step.name;
        let Some(runs) = bucketing.step(name) else {
            continue;
        };
        let line = match runs {
            Runs::Bucketed {
                key_columns,
                over_all_buckets,
            } => {
                let held = if key_columns.is_empty() {
                    "the key dropped".to_string()
                } else {
                    format!("key in {}", key_columns.join(", "))
                };
                let checks = if over_all_buckets.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; checked over all buckets: {}",
                        over_all_buckets.join(", ")
                    )
                };
                format!("bucketed  {held}{checks}")
            }
            Runs::Whole(Whole::NoBucketedInput) => "whole     reads no split table".to_string(),
            Runs::Whole(Whole::NeedsAllBuckets { table }) => {
                format!("whole     reads {table}, which needs every bucket first")
            }
            Runs::Whole(Whole::Refused { refusal, at }) => format!(
                "whole     {}{}: {}",
                refusal.operator,
                at.as_ref()
                    .map(|at| format!(" at {at}"))
                    .unwrap_or_default(),
                refusal.reason
            ),
        };
        out.push_str(&format!("  {name:<width$}  {line}\n"));
    }
    out
}

/// [`bucketing_text`]'s facts for tools.
fn bucketing_json(bucketing: &Result<Bucketing, String>) -> serde_json::Value {
    let bucketing = match bucketing {
        Ok(bucketing) => bucketing,
        Err(error) => return json!({ "analysed": false, "error": error }),
    };
    json!({
        "analysed": true,
        "sources": bucketing.sources.iter().map(|(source, key)| json!({
            "name": source,
            "key": key,
        })).collect::<Vec<_>>(),
        "key_parsed_as_bigint_in": bucketing.parses_key_in,
        "null_keys_spread": bucketing.spreads_null_keys,
        "steps": bucketing.steps.iter().map(|step| match &step.runs {
            Runs::Bucketed { key_columns, over_all_buckets } => json!({
                "name": step.step,
                "bucketed": true,
                "key_columns": key_columns,
                "checked_over_all_buckets": over_all_buckets,
            }),
            Runs::Whole(whole) => {
                let (why, operator, at) = match whole {
                    Whole::NoBucketedInput => ("reads no split table".to_string(), None, None),
                    Whole::NeedsAllBuckets { table } => {
                        (format!("reads {table}, which needs every bucket first"), None, None)
                    }
                    Whole::Refused { refusal, at } => {
                        (refusal.reason.clone(), Some(refusal.operator), at.clone())
                    }
                };
                json!({
                    "name": step.step,
                    "bucketed": false,
                    "why": why,
                    "operator": operator,
                    "at": at,
                })
            }
        }).collect::<Vec<_>>(),
    })
}

/// The plan as JSON; the caller masks its strings. `order` is each step's place in the
/// whole plan, selected or not.
pub fn json(shown: &Shown) -> serde_json::Value {
    let pipeline = shown.pipeline;
    let mut plan = json!({
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
    });
    // Only a pipeline with a `partition_key` has it.
    if let Some(bucketing) = &shown.bucketing {
        plan["bucketing"] = bucketing_json(bucketing);
    }
    plan
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
