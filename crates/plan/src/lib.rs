//! segflow-plan: the step graph of a pipeline.
//!
//! Each step's SQL is parsed with DataFusion's own parser and the tables it reads are taken
//! from the statement (CTE names excluded), so steps may be listed in any order. A table no
//! source or step defines, or a cycle, is an error here: before any data is read.
//! [`choose`] picks a part of the graph with dbt's selectors (`STEP`, `+STEP`, `STEP+`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use datafusion_sql::parser::{DFParser, Statement};
use datafusion_sql::resolve::resolve_table_references;
use datafusion_sql::sqlparser::ast;
use segflow_pipeline::{CheckKind, Pipeline, Step, did_you_mean};

mod select;

pub use select::{Chosen, Selector, SelectorError, choose};

/// Steps in an order that respects every dependency.
#[derive(Debug, Clone)]
pub struct StepGraph {
    /// The pipeline's sources, as declared.
    pub sources: Vec<String>,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub step: Step,
    /// Tables the SQL reads (sources or other steps), sorted.
    pub reads: Vec<String>,
    /// 1 + the highest level among the steps it reads (sources are level 0). Steps on the
    /// same level do not depend on each other.
    pub level: usize,
}

/// Every problem found while planning, in the order the steps are declared.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct PlanError {
    pub problems: Vec<LocatedProblem>,
}

/// A problem and where in the pipeline file it is: `file:line:column: key`.
#[derive(Debug, Clone, PartialEq)]
pub struct LocatedProblem {
    /// `file:line:column: key`, as messages show it.
    pub at: String,
    /// The key, e.g. `steps[2].sql`, and its (line, column) in the file when written there.
    pub key: String,
    pub position: Option<(usize, usize)>,
    pub problem: PlanProblem,
}

impl LocatedProblem {
    fn new(pipeline: &Pipeline, key: &str, problem: PlanProblem) -> LocatedProblem {
        LocatedProblem {
            at: pipeline.at(key),
            key: key.to_string(),
            position: pipeline.locations.locate(key),
            problem,
        }
    }
}

impl PlanError {
    fn render(&self) -> String {
        let lines: Vec<String> = self
            .problems
            .iter()
            .map(|located| format!("{}: {}", located.at, located.problem))
            .collect();
        lines.join("\n")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlanProblem {
    /// The SQL does not parse; `message` carries the parser's line and column within the SQL.
    Syntax {
        step: String,
        sql_file: Option<String>,
        message: String,
    },
    /// A step must be exactly one query (SELECT, WITH, VALUES).
    NotOneQuery {
        step: String,
        sql_file: Option<String>,
        found: String,
    },
    UnknownTable {
        step: String,
        sql_file: Option<String>,
        table: String,
        hint: String,
    },
    Cycle {
        steps: Vec<String>,
    },
    UnknownStageInput {
        input: String,
        hint: String,
    },
}

impl fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanProblem::Syntax {
                step,
                sql_file,
                message,
            } => write!(
                f,
                "step `{step}`{}: SQL does not parse: {message}",
                in_file(sql_file)
            ),
            PlanProblem::NotOneQuery {
                step,
                sql_file,
                found,
            } => write!(
                f,
                "step `{step}`{}: a step's SQL must be exactly one query (SELECT or WITH), found {found}",
                in_file(sql_file)
            ),
            PlanProblem::UnknownTable {
                step,
                sql_file,
                table,
                hint,
            } => write!(
                f,
                "step `{step}`{}: reads table `{table}`, which no source or step defines{hint}",
                in_file(sql_file)
            ),
            PlanProblem::Cycle { steps } => {
                let mut ring = steps.clone();
                ring.push(steps[0].clone());
                write!(
                    f,
                    "steps depend on each other in a cycle: {}",
                    ring.join(" -> ")
                )
            }
            PlanProblem::UnknownStageInput { input, hint } => {
                write!(f, "table `{input}` is not a source or step{hint}")
            }
        }
    }
}

fn in_file(sql_file: &Option<String>) -> String {
    sql_file
        .as_ref()
        .map(|file| format!(" ({file})"))
        .unwrap_or_default()
}

/// Orders the pipeline's steps by the tables they read.
pub fn plan(pipeline: &Pipeline) -> Result<StepGraph, PlanError> {
    let sources: BTreeSet<&str> = pipeline
        .sources
        .iter()
        .map(|source| source.name.as_str())
        .collect();
    let step_index: BTreeMap<&str, usize> = pipeline
        .steps
        .iter()
        .enumerate()
        .map(|(index, step)| (step.name.as_str(), index))
        .collect();
    let known: Vec<&str> = sources
        .iter()
        .copied()
        .chain(step_index.keys().copied())
        .collect();

    let mut problems: Vec<LocatedProblem> = Vec::new();
    let mut reads: Vec<Vec<String>> = Vec::with_capacity(pipeline.steps.len());
    for step in &pipeline.steps {
        let key = step.sql_key();
        let tables = match tables_read(step) {
            Ok(tables) => tables,
            Err(problem) => {
                problems.push(LocatedProblem::new(pipeline, &key, problem));
                Vec::new()
            }
        };
        for table in &tables {
            if !known.contains(&table.as_str()) {
                problems.push(LocatedProblem::new(
                    pipeline,
                    &key,
                    PlanProblem::UnknownTable {
                        step: step.name.clone(),
                        sql_file: sql_file(step),
                        table: table.clone(),
                        hint: did_you_mean(table, &known),
                    },
                ));
            }
        }
        reads.push(tables);
    }
    for (key, input) in pipeline.stage_inputs() {
        if !known.contains(&input) {
            problems.push(LocatedProblem::new(
                pipeline,
                key,
                PlanProblem::UnknownStageInput {
                    input: input.to_string(),
                    hint: did_you_mean(input, &known),
                },
            ));
        }
    }

    let step_deps: Vec<Vec<usize>> = reads
        .iter()
        .map(|tables| {
            tables
                .iter()
                .filter_map(|table| step_index.get(table.as_str()).copied())
                .collect()
        })
        .collect();
    let order = match topological_order(&step_deps) {
        Ok(order) => order,
        Err(cycle) => {
            problems.push(LocatedProblem::new(
                pipeline,
                &pipeline.steps[cycle[0]].key,
                PlanProblem::Cycle {
                    steps: cycle
                        .into_iter()
                        .map(|index| pipeline.steps[index].name.clone())
                        .collect(),
                },
            ));
            Vec::new()
        }
    };
    if !problems.is_empty() {
        return Err(PlanError { problems });
    }

    let mut levels = vec![0usize; pipeline.steps.len()];
    for &index in &order {
        levels[index] = 1 + step_deps[index]
            .iter()
            .map(|&dep| levels[dep])
            .max()
            .unwrap_or(0);
    }
    let steps = order
        .into_iter()
        .map(|index| PlannedStep {
            step: pipeline.steps[index].clone(),
            reads: reads[index].clone(),
            level: levels[index],
        })
        .collect();
    Ok(StepGraph {
        sources: pipeline
            .sources
            .iter()
            .map(|source| source.name.clone())
            .collect(),
        steps,
    })
}

/// The tables a step reads: for a SQL step, those its single query reads (lower-cased as
/// DataFusion resolves unquoted names); for a validate step, its input, the tables its
/// `relationships` checks point to and those its `sql` checks read.
pub fn tables_read(step: &Step) -> Result<Vec<String>, PlanProblem> {
    let Some(validate) = &step.validate else {
        return query_tables(step, &step.sql);
    };
    let mut tables: BTreeSet<String> = BTreeSet::new();
    tables.insert(validate.input.clone());
    tables.extend(validate.referenced_tables().into_iter().map(str::to_string));
    for check in &validate.checks {
        if let CheckKind::Sql { sql } = &check.kind {
            tables.extend(query_tables(step, sql)?);
        }
    }
    Ok(tables.into_iter().collect())
}

fn query_tables(step: &Step, sql: &str) -> Result<Vec<String>, PlanProblem> {
    let syntax = |message: String| PlanProblem::Syntax {
        step: step.name.clone(),
        sql_file: sql_file(step),
        message,
    };
    let statements = DFParser::parse_sql(sql).map_err(|error| {
        let message = error.strip_backtrace();
        let message = message.trim_start_matches("SQL error: ");
        // sqlparser's Debug form: ParserError("...")
        let message = message
            .strip_prefix("ParserError(\"")
            .and_then(|inner| inner.strip_suffix("\")"))
            .unwrap_or(message);
        syntax(message.replace("\\\"", "\""))
    })?;
    let not_one_query = |found: String| PlanProblem::NotOneQuery {
        step: step.name.clone(),
        sql_file: sql_file(step),
        found,
    };
    if statements.len() != 1 {
        return Err(not_one_query(format!("{} statements", statements.len())));
    }
    let statement = &statements[0];
    match statement {
        Statement::Statement(inner) if matches!(**inner, ast::Statement::Query(_)) => {}
        other => {
            let text = other.to_string();
            let first_word = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            return Err(not_one_query(format!("`{first_word} ...`")));
        }
    }
    let (tables, _ctes) =
        resolve_table_references(statement, true).map_err(|error| syntax(error.to_string()))?;
    let names: BTreeSet<String> = tables.into_iter().map(|table| table.to_string()).collect();
    Ok(names.into_iter().collect())
}

fn sql_file(step: &Step) -> Option<String> {
    step.sql_file
        .as_ref()
        .map(|file| file.display().to_string())
}

/// Kahn's algorithm, taking ready steps in declaration order so the order is stable. On a
/// cycle, returns the steps of one cycle in dependency order.
fn topological_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let count = deps.len();
    let mut remaining: Vec<usize> = deps
        .iter()
        .map(|d| d.iter().collect::<BTreeSet<_>>().len())
        .collect();
    let mut dependents = vec![Vec::new(); count];
    for (step, step_deps) in deps.iter().enumerate() {
        for &dep in step_deps.iter().collect::<BTreeSet<_>>() {
            dependents[dep].push(step);
        }
    }
    let mut ready: BTreeSet<usize> = (0..count).filter(|&i| remaining[i] == 0).collect();
    let mut order = Vec::with_capacity(count);
    while let Some(next) = ready.pop_first() {
        order.push(next);
        for &dependent in &dependents[next] {
            remaining[dependent] -= 1;
            if remaining[dependent] == 0 {
                ready.insert(dependent);
            }
        }
    }
    if order.len() == count {
        return Ok(order);
    }
    // Every unplaced step waits on another unplaced step: walk those edges until one repeats.
    let placed: BTreeSet<usize> = order.into_iter().collect();
    let start = (0..count).find(|i| !placed.contains(i)).unwrap_or(0);
    let mut path = vec![start];
    loop {
        let current = *path.last().unwrap_or(&start);
        let Some(&next) = deps[current].iter().find(|dep| !placed.contains(dep)) else {
            return Err(path);
        };
        if let Some(position) = path.iter().position(|&step| step == next) {
            // `path` follows "reads"; reversed it follows the data. Start at the step
            // declared first so the message is stable.
            let mut cycle = path.split_off(position);
            cycle.reverse();
            let first = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
            cycle.rotate_left(first);
            return Err(cycle);
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests;
