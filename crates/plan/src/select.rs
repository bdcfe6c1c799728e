//! Picking a part of the step graph with dbt's selectors, as dbt users write them:
//!
//! - `NAME`: the source or step so named;
//! - `+NAME`: it and every table it reads, transitively;
//! - `NAME+`: it and every step that reads it, transitively;
//! - `+NAME+`: both.
//!
//! Several selectors are a union; `--exclude` takes away what its selectors pick.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use segflow_pipeline::did_you_mean;

use crate::{PlannedStep, StepGraph};

/// One selector, as written after `--select` or `--exclude`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    /// `+NAME`: with everything it reads.
    pub upstream: bool,
    /// `NAME+`: with everything that reads it.
    pub downstream: bool,
}

impl FromStr for Selector {
    type Err = String;

    fn from_str(text: &str) -> Result<Selector, String> {
        let (upstream, rest) = match text.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (downstream, name) = match rest.strip_suffix('+') {
            Some(name) => (true, name),
            None => (false, rest),
        };
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !valid {
            return Err(format!(
                "`{text}` is not a selector: write NAME, +NAME (with what it reads), \
                 NAME+ (with what reads it) or +NAME+"
            ));
        }
        Ok(Selector {
            name: name.to_string(),
            upstream,
            downstream,
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plus = |on: bool| if on { "+" } else { "" };
        write!(
            f,
            "{}{}{}",
            plus(self.upstream),
            self.name,
            plus(self.downstream)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("{option} {selector}: no source or step is named `{name}`{hint}")]
    UnknownName {
        option: &'static str,
        selector: String,
        name: String,
        hint: String,
    },
    #[error("--exclude takes away every step and source --select picks: nothing is left")]
    NothingLeft,
    /// A run computes every step it needs from the sources: nothing earlier is stored.
    #[error(
        "--exclude {excluded}: step `{reader}` is selected and reads `{excluded}`, which a \
         run must compute first (exclude `{reader}` too, or select less)"
    )]
    ExcludedInput { excluded: String, reader: String },
}

/// What selectors picked: sources in declared order, steps in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub sources: Vec<String>,
    pub steps: Vec<String>,
    /// What `--exclude` took away (whether or not `--select` picked it).
    pub excluded: BTreeSet<String>,
}

impl Chosen {
    pub fn contains(&self, name: &str) -> bool {
        self.steps.iter().chain(&self.sources).any(|n| n == name)
    }

    /// The chosen steps with every step they read from, transitively, in plan order: what
    /// a run computes to have them. An excluded step among those is an error.
    pub fn with_inputs<'g>(
        &self,
        graph: &'g StepGraph,
    ) -> Result<Vec<&'g PlannedStep>, SelectorError> {
        let mut needed: BTreeSet<&str> = self.steps.iter().map(String::as_str).collect();
        // Plan order puts every step after what it reads, so one backward pass suffices.
        for planned in graph.steps.iter().rev() {
            if !needed.contains(planned.step.name.as_str()) {
                continue;
            }
            for table in &planned.reads {
                if graph.step(table).is_none() {
                    continue;
                }
                if self.excluded.contains(table) {
                    return Err(SelectorError::ExcludedInput {
                        excluded: table.clone(),
                        reader: planned.step.name.clone(),
                    });
                }
                needed.insert(table);
            }
        }
        Ok(graph
            .steps
            .iter()
            .filter(|planned| needed.contains(planned.step.name.as_str()))
            .collect())
    }
}

impl StepGraph {
    /// The planned step so named.
    pub fn step(&self, name: &str) -> Option<&PlannedStep> {
        self.steps.iter().find(|planned| planned.step.name == name)
    }

    fn is_node(&self, name: &str) -> bool {
        self.sources.iter().any(|source| source == name) || self.step(name).is_some()
    }
}

/// The sources and steps `select` picks (every one when it is empty), less those `exclude`
/// picks.
pub fn choose(
    graph: &StepGraph,
    select: &[Selector],
    exclude: &[Selector],
) -> Result<Chosen, SelectorError> {
    let picked = |option: &'static str, selectors: &[Selector]| {
        let mut picked = BTreeSet::new();
        for selector in selectors {
            picked.extend(expand(graph, option, selector)?);
        }
        Ok::<_, SelectorError>(picked)
    };
    let selected = if select.is_empty() {
        graph
            .sources
            .iter()
            .cloned()
            .chain(graph.steps.iter().map(|planned| planned.step.name.clone()))
            .collect()
    } else {
        picked("--select", select)?
    };
    let excluded = picked("--exclude", exclude)?;
    let left = |name: &String| selected.contains(name) && !excluded.contains(name);
    let chosen = Chosen {
        sources: graph.sources.iter().filter(|n| left(n)).cloned().collect(),
        steps: graph
            .steps
            .iter()
            .map(|planned| &planned.step.name)
            .filter(|n| left(n))
            .cloned()
            .collect(),
        excluded,
    };
    if chosen.sources.is_empty() && chosen.steps.is_empty() {
        return Err(SelectorError::NothingLeft);
    }
    Ok(chosen)
}

/// The names one selector picks.
fn expand(
    graph: &StepGraph,
    option: &'static str,
    selector: &Selector,
) -> Result<BTreeSet<String>, SelectorError> {
    // Names as DataFusion resolves unquoted ones, which is how `reads` holds them.
    let name = if graph.is_node(&selector.name) {
        selector.name.clone()
    } else {
        selector.name.to_lowercase()
    };
    if !graph.is_node(&name) {
        let known: Vec<&str> = graph
            .sources
            .iter()
            .map(String::as_str)
            .chain(graph.steps.iter().map(|planned| planned.step.name.as_str()))
            .collect();
        return Err(SelectorError::UnknownName {
            option,
            selector: selector.to_string(),
            name: selector.name.clone(),
            hint: did_you_mean(&selector.name, &known),
        });
    }
    let mut picked = BTreeSet::from([name.clone()]);
    if selector.upstream {
        for planned in graph.steps.iter().rev() {
            if picked.contains(&planned.step.name) {
                picked.extend(planned.reads.iter().cloned());
            }
        }
    }
    if selector.downstream {
        let mut readers = BTreeSet::from([name]);
        for planned in &graph.steps {
            if planned.reads.iter().any(|table| readers.contains(table)) {
                readers.insert(planned.step.name.clone());
            }
        }
        picked.extend(readers);
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan;
    use crate::tests::pipeline;

    /// raw -> cleaned -> features -> scored; raw -> refunds -> features; raw -> scored;
    /// cleaned -> audit.
    fn graph() -> StepGraph {
        plan(&pipeline(
            &[
                ("cleaned", "SELECT * FROM raw"),
                ("refunds", "SELECT * FROM raw WHERE x < 0"),
                ("features", "SELECT * FROM cleaned JOIN refunds USING (id)"),
                ("scored", "SELECT * FROM features JOIN raw USING (id)"),
                ("audit", "SELECT count(*) FROM cleaned"),
            ],
            "scored",
        ))
        .unwrap()
    }

    fn selectors(texts: &[&str]) -> Vec<Selector> {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    fn chosen(select: &[&str], exclude: &[&str]) -> Result<Chosen, SelectorError> {
        choose(&graph(), &selectors(select), &selectors(exclude))
    }

    fn steps(select: &[&str], exclude: &[&str]) -> Vec<String> {
        chosen(select, exclude).unwrap().steps
    }

    #[test]
    fn parses_the_four_forms_and_rejects_others() {
        let parsed: Selector = "+features+".parse().unwrap();
        assert_eq!(
            parsed,
            Selector {
                name: "features".into(),
                upstream: true,
                downstream: true
            }
        );
        assert_eq!(parsed.to_string(), "+features+");
        assert!(!"features".parse::<Selector>().unwrap().upstream);
        assert!("features+".parse::<Selector>().unwrap().downstream);
        for bad in ["", "+", "++", "a b", "2+features", "features@"] {
            assert!(bad.parse::<Selector>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn a_plain_name_picks_only_that_step() {
        assert_eq!(steps(&["features"], &[]), ["features"]);
        assert!(chosen(&["features"], &[]).unwrap().sources.is_empty());
    }

    #[test]
    fn plus_before_picks_everything_read_transitively() {
        let picked = chosen(&["+features"], &[]).unwrap();
        assert_eq!(picked.steps, ["cleaned", "refunds", "features"]);
        assert_eq!(picked.sources, ["raw"]);
    }

    #[test]
    fn plus_after_picks_every_reader_transitively() {
        assert_eq!(
            steps(&["cleaned+"], &[]),
            ["cleaned", "features", "scored", "audit"]
        );
        // From a source: every step downstream of it.
        assert_eq!(steps(&["raw+"], &[]).len(), 5);
    }

    #[test]
    fn selectors_are_a_union_and_exclude_takes_away() {
        assert_eq!(steps(&["audit", "refunds"], &[]), ["refunds", "audit"]);
        assert_eq!(
            steps(&["cleaned+"], &["scored"]),
            ["cleaned", "features", "audit"]
        );
        assert_eq!(steps(&["cleaned+"], &["features+"]), ["cleaned", "audit"]);
        // No --select: everything, less what is excluded.
        let all_but = chosen(&[], &["raw"]).unwrap();
        assert!(all_but.sources.is_empty());
        assert_eq!(all_but.steps.len(), 5);
        assert_eq!(
            chosen(&["audit"], &["audit"]),
            Err(SelectorError::NothingLeft)
        );
    }

    #[test]
    fn an_unknown_name_says_which_option_and_suggests_one() {
        let error = chosen(&["featurs+"], &[]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--select featurs+: no source or step is named `featurs` (did you mean `features`?)"
        );
        assert!(matches!(
            chosen(&[], &["nope"]),
            Err(SelectorError::UnknownName {
                option: "--exclude",
                ..
            })
        ));
    }

    #[test]
    fn names_match_as_sql_resolves_unquoted_ones() {
        assert_eq!(steps(&["Features"], &[]), ["features"]);
    }

    #[test]
    fn with_inputs_adds_what_the_chosen_steps_read_in_plan_order() {
        let graph = graph();
        let picked = choose(&graph, &selectors(&["scored", "audit"]), &[]).unwrap();
        let needed: Vec<&str> = picked
            .with_inputs(&graph)
            .unwrap()
            .iter()
            .map(|planned| planned.step.name.as_str())
            .collect();
        assert_eq!(
            needed,
            ["cleaned", "refunds", "features", "scored", "audit"]
        );
    }

    #[test]
    fn with_inputs_refuses_an_excluded_step_a_chosen_one_reads() {
        let graph = graph();
        let picked = choose(&graph, &selectors(&["cleaned+"]), &selectors(&["refunds"])).unwrap();
        assert_eq!(
            picked.with_inputs(&graph).unwrap_err(),
            SelectorError::ExcludedInput {
                excluded: "refunds".into(),
                reader: "features".into()
            }
        );
    }
}
