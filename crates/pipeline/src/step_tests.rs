//! Test files for SQL steps: rows in, expected rows out.
//!
//! A test file holds a list of tests; each names what it runs (one step, a range of steps
//! in plan order, or the whole pipeline with its segment stage), the rows of every table
//! that reads from outside what runs, and the rows expected. This module checks a file's
//! shape and its own rules; whether its steps, tables and columns exist is checked against
//! the pipeline by the test runner, which reports at the same file, line and key.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::checks::Literal;
use crate::raw::RawLiteral;
use crate::{KeyIndex, PipelineError, Problem, Result};

/// One row: column -> value (`None` for null).
pub type Row = BTreeMap<String, Option<Literal>>;

#[derive(Debug, Clone)]
pub struct TestFile {
    pub file: PathBuf,
    pub tests: Vec<StepTest>,
    pub locations: KeyIndex,
}

impl TestFile {
    /// `file:line:column: key` for messages about `key`.
    pub fn at(&self, key: &str) -> String {
        crate::located(&self.file, self.locations.locate(key), key)
    }

    /// A problem with `key` of this test file, located in it.
    pub fn problem(&self, key: &str, message: impl Into<String>) -> crate::Problem {
        crate::Problem {
            position: self.locations.locate(key),
            ..crate::Problem::new(key, message)
        }
    }
}

#[derive(Debug, Clone)]
pub struct StepTest {
    pub name: String,
    /// `tests[i]`, for messages.
    pub key: String,
    pub target: Target,
    /// Variable overrides for this test (e.g. a fixed `as_of`).
    pub vars: BTreeMap<String, String>,
    /// In the order written.
    pub given: Vec<GivenTable>,
    pub expect: Option<Expected>,
    /// Per validate step, the rows expected in its rejects.
    pub expect_rejects: Vec<ExpectedRejects>,
    /// For whole-pipeline tests: expected (key, segment_id) rows.
    pub expect_segments: Option<Expected>,
    /// For whole-pipeline tests of a pipeline with a value stage: expected rows of the
    /// customers' values (key, p_alive, expected_purchases, expected_spend, clv).
    pub expect_values: Option<Expected>,
    /// Segment settings replacing the pipeline's, for a tiny data set.
    pub segment: SegmentOverride,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Step(String),
    /// Every step from `from` to `to`, in plan order.
    Range {
        from: String,
        to: String,
    },
    /// Every step, then the segment stage.
    Pipeline,
}

#[derive(Debug, Clone)]
pub struct GivenTable {
    pub table: String,
    /// `tests[i].given.<table>`
    pub key: String,
    pub rows: GivenRows,
}

#[derive(Debug, Clone)]
pub enum GivenRows {
    Inline(Vec<Row>),
    /// A CSV file with a header, relative to the test file; values are text, cast to the
    /// table's column types.
    Csv(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Expected {
    /// `tests[i].expect`
    pub key: String,
    /// The table compared: by default the step under test (the last of a range).
    pub table: Option<String>,
    pub rows: Vec<Row>,
    /// Compare in order (default: as multisets).
    pub ordered: bool,
    /// Floats match when within `tolerance * max(1, |expected|)`.
    pub tolerance: f64,
    /// Columns that identify a row: a row expected and a row found with the same key are
    /// shown as one differing row rather than one missing and one unexpected.
    pub row_key: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ExpectedRejects {
    pub step: String,
    pub expected: Expected,
}

#[derive(Debug, Clone, Default)]
pub struct SegmentOverride {
    pub k: Option<usize>,
    pub seed: Option<u64>,
    pub restarts: Option<usize>,
}

pub const DEFAULT_TOLERANCE: f64 = 1e-9;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestFile {
    tests: Vec<RawTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    /// A name unique in the file; `segflow test --select` picks tests by it.
    name: String,
    /// The step under test.
    #[serde(default)]
    step: Option<String>,
    /// A range of steps in plan order: `{from: a, to: b}`.
    #[serde(default)]
    steps: Option<RawRange>,
    /// `true`: every step and the segment stage.
    #[serde(default)]
    pipeline: Option<bool>,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    /// Table name -> rows (a list of maps), or `{csv: file}`.
    #[serde(default)]
    given: BTreeMap<String, RawGiven>,
    #[serde(default)]
    expect: Option<RawExpected>,
    #[serde(default)]
    expect_rejects: BTreeMap<String, RawExpected>,
    #[serde(default)]
    expect_segments: Option<RawExpected>,
    #[serde(default)]
    expect_values: Option<RawExpected>,
    #[serde(default)]
    segment: Option<RawSegmentOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawGiven {
    Rows(Vec<BTreeMap<String, Option<RawLiteral>>>),
    File(RawGivenFile),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGivenFile {
    csv: String,
}

/// Either the rows alone, or the rows with comparison settings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawExpected {
    Rows(Vec<BTreeMap<String, Option<RawLiteral>>>),
    Detailed(RawExpectedDetailed),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectedDetailed {
    #[serde(default)]
    table: Option<String>,
    rows: Vec<BTreeMap<String, Option<RawLiteral>>>,
    #[serde(default)]
    ordered: Option<bool>,
    #[serde(default)]
    tolerance: Option<f64>,
    #[serde(default)]
    key: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegmentOverride {
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    restarts: Option<usize>,
}

/// Reads a test file and checks its own rules (one target per test, unique names, sane
/// settings); every problem is reported with its line and key.
pub fn load_tests(path: &Path) -> Result<TestFile> {
    let bytes = std::fs::read(path).map_err(|error| PipelineError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let text = crate::utf8_text(path, bytes)?;
    let raw: RawTestFile = crate::parse_yaml(path, &text)?;
    let locations = KeyIndex::new(&text);
    crate::refuse_duplicate_keys(path, &locations)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    let mut tests = Vec::new();
    for (index, raw) in raw.tests.into_iter().enumerate() {
        let key = format!("tests[{index}]");
        if !names.insert(raw.name.clone()) {
            problems.push(Problem::new(
                format!("{key}.name"),
                format!("a test named `{}` is already in this file", raw.name),
            ));
        }
        let target = match (raw.step, raw.steps, raw.pipeline) {
            (Some(step), None, None | Some(false)) => Some(Target::Step(step)),
            (None, Some(range), None | Some(false)) => Some(Target::Range {
                from: range.from,
                to: range.to,
            }),
            (None, None, Some(true)) => Some(Target::Pipeline),
            _ => {
                problems.push(Problem::new(
                    key.clone(),
                    "say what the test runs: `step: NAME`, `steps: {from: A, to: B}` or `pipeline: true` (one of them)",
                ));
                None
            }
        };
        let expected = |problems: &mut Vec<Problem>, key: String, raw: RawExpected| {
            let (table, rows, ordered, tolerance, row_key) = match raw {
                RawExpected::Rows(rows) => (None, rows, None, None, Vec::new()),
                RawExpected::Detailed(d) => (d.table, d.rows, d.ordered, d.tolerance, d.key),
            };
            let tolerance = tolerance.unwrap_or(DEFAULT_TOLERANCE);
            if !(tolerance >= 0.0 && tolerance.is_finite()) {
                problems.push(Problem::new(
                    format!("{key}.tolerance"),
                    "the tolerance is a number >= 0",
                ));
            }
            Expected {
                key,
                table,
                rows: rows.iter().map(row).collect(),
                ordered: ordered.unwrap_or(false),
                tolerance,
                row_key,
            }
        };
        let expect = raw
            .expect
            .map(|raw| expected(&mut problems, format!("{key}.expect"), raw));
        let expect_rejects = raw
            .expect_rejects
            .into_iter()
            .map(|(step, raw)| ExpectedRejects {
                expected: expected(&mut problems, format!("{key}.expect_rejects.{step}"), raw),
                step,
            })
            .collect::<Vec<_>>();
        let expect_segments = raw
            .expect_segments
            .map(|raw| expected(&mut problems, format!("{key}.expect_segments"), raw));
        if expect_segments.is_some() && target != Some(Target::Pipeline) && target.is_some() {
            problems.push(Problem::new(
                format!("{key}.expect_segments"),
                "segments come from the segment stage: only a `pipeline: true` test can expect them",
            ));
        }
        let expect_values = raw
            .expect_values
            .map(|raw| expected(&mut problems, format!("{key}.expect_values"), raw));
        if expect_values.is_some() && target != Some(Target::Pipeline) && target.is_some() {
            problems.push(Problem::new(
                format!("{key}.expect_values"),
                "values come from the value stage: only a `pipeline: true` test can expect them",
            ));
        }
        if expect.is_none()
            && expect_rejects.is_empty()
            && expect_segments.is_none()
            && expect_values.is_none()
        {
            problems.push(Problem::new(
                key.clone(),
                "a test needs something to compare: `expect`, `expect_rejects`, `expect_segments` or `expect_values`",
            ));
        }
        let segment = raw
            .segment
            .map(|s| SegmentOverride {
                k: s.k,
                seed: s.seed,
                restarts: s.restarts,
            })
            .unwrap_or_default();
        let given = raw
            .given
            .into_iter()
            .map(|(table, rows)| GivenTable {
                key: format!("{key}.given.{table}"),
                rows: match rows {
                    RawGiven::Rows(rows) => GivenRows::Inline(rows.iter().map(row).collect()),
                    RawGiven::File(file) => GivenRows::Csv(base.join(file.csv)),
                },
                table,
            })
            .collect();
        if let Some(target) = target {
            tests.push(StepTest {
                name: raw.name,
                key,
                target,
                vars: raw.vars,
                given,
                expect,
                expect_rejects,
                expect_segments,
                expect_values,
                segment,
            });
        }
    }
    if !problems.is_empty() {
        for problem in &mut problems {
            problem.position = locations.locate(&problem.key);
        }
        return Err(PipelineError::Invalid {
            file: path.to_path_buf(),
            problems,
        });
    }
    Ok(TestFile {
        file: path.to_path_buf(),
        tests,
        locations,
    })
}

fn row(raw: &BTreeMap<String, Option<RawLiteral>>) -> Row {
    raw.iter()
        .map(|(column, value)| (column.clone(), value.as_ref().map(crate::checks::literal)))
        .collect()
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn load(text: &str) -> Result<TestFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        std::fs::write(&path, text).unwrap();
        load_tests(&path)
    }

    #[test]
    fn a_test_reads_rows_and_settings() {
        let file = load(
            "tests:\n  - name: t\n    step: s\n    vars: { as_of: '2011-12-10' }\n    given:\n      a:\n        - { x: 1, y: 'two', z: null, w: 1.5 }\n      b: { csv: b.csv }\n    expect:\n      rows: [{ x: 1 }]\n      key: [x]\n      tolerance: 0.01\n",
        )
        .unwrap();
        let test = &file.tests[0];
        assert_eq!(test.target, Target::Step("s".into()));
        assert_eq!(test.vars["as_of"], "2011-12-10");
        let GivenRows::Inline(rows) = &test.given[0].rows else {
            panic!()
        };
        assert_eq!(rows[0]["x"], Some(Literal::Integer(1)));
        assert_eq!(rows[0]["y"], Some(Literal::Text("two".into())));
        assert_eq!(rows[0]["z"], None);
        assert_eq!(rows[0]["w"], Some(Literal::Float(1.5)));
        assert!(matches!(&test.given[1].rows, GivenRows::Csv(path) if path.ends_with("b.csv")));
        let expect = test.expect.as_ref().unwrap();
        assert_eq!(expect.row_key, ["x"]);
        assert_eq!(expect.tolerance, 0.01);
        assert!(!expect.ordered);
    }

    #[test]
    fn rules_are_checked_with_their_lines() {
        let error = load(
            "tests:\n  - name: t\n    step: s\n    pipeline: true\n    expect: []\n  - name: t\n    step: s\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("t.yaml:2:5: tests[0]: say what the test runs"),
            "{error}"
        );
        assert!(
            error.contains("tests[1].name: a test named `t` is already"),
            "{error}"
        );
        assert!(
            error.contains("tests[1]: a test needs something to compare"),
            "{error}"
        );
    }
}
