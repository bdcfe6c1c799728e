use std::fmt;
use std::path::PathBuf;

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything that can be wrong with a pipeline file before any data is touched.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cannot read pipeline file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The YAML does not parse, or does not have the shape of a pipeline.
    #[error("{}:{line}:{column}: {key}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        /// Where in the document, e.g. `steps[3].sql`; `(root)` for the document itself.
        key: String,
        message: String,
    },
    /// The file has the right shape but breaks rules of a pipeline; every problem is listed.
    #[error("{}", Problems { file, problems })]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One broken rule, located by its key path in the pipeline file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// e.g. `steps[2].sql_file`
    pub key: String,
    pub message: String,
    /// (line, column) of the key in the file, when it is written there.
    pub position: Option<(usize, usize)>,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
            position: None,
        }
    }
}

/// `file:line:column: key`, or `file: key` when the key is not written in the file.
pub fn located(file: &std::path::Path, position: Option<(usize, usize)>, key: &str) -> String {
    match position {
        Some((line, column)) => format!("{}:{line}:{column}: {key}", file.display()),
        None => format!("{}: {key}", file.display()),
    }
}

/// Every problem found in one file, as segflow shows them: the count, then one problem a
/// line, located, with the lines of a long message indented under it. Pipeline files, the
/// SQL planned against them and step test files all report their problems so.
pub struct Problems<'a> {
    pub file: &'a std::path::Path,
    pub problems: &'a [Problem],
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        write!(
            f,
            "{}: {count} problem{}",
            self.file.display(),
            if count == 1 { "" } else { "s" }
        )?;
        for problem in self.problems {
            write!(
                f,
                "\n  {}: {}",
                located(self.file, problem.position, &problem.key),
                problem.message.replace('\n', "\n    ")
            )?;
        }
        Ok(())
    }
}
