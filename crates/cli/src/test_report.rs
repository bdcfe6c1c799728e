//! `segflow test` for machines: `--format json` on stdout, and `--junit FILE`, the XML CI
//! systems (GitLab, Jenkins, GitHub test reporters) show as a test list. One `<testsuite>`
//! per test file, one `<testcase>` per test, its failures in one `<failure>`.

use std::path::Path;
use std::time::Duration;

use quick_xml::escape::escape;
use segflow_steptest::Outcome;
use serde_json::{Value, json};

/// Every outcome with its file, target, time and failures; the caller masks it.
pub fn json(pipeline: &Path, outcomes: &[Outcome]) -> Value {
    let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    json!({
        "pipeline": pipeline.display().to_string(),
        "tests": outcomes.len(),
        "passed": outcomes.len() - failed,
        "failed": failed,
        "outcomes": outcomes.iter().map(|outcome| json!({
            "file": outcome.file.display().to_string(),
            "name": outcome.name,
            "target": outcome.target,
            "passed": outcome.failures.is_empty(),
            // Milliseconds kept, as the JUnit report has them.
            "seconds": (outcome.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "failures": outcome.failures,
        })).collect::<Vec<_>>(),
    })
}

/// The outcomes as JUnit XML; `elapsed` is the whole command's time.
pub fn junit(pipeline: &Path, outcomes: &[Outcome], elapsed: Duration) -> String {
    let stem = pipeline
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let failed = |outcomes: &[&Outcome]| outcomes.iter().filter(|o| !o.failures.is_empty()).count();
    let mut files: Vec<(&Path, Vec<&Outcome>)> = Vec::new();
    for outcome in outcomes {
        match files
            .iter_mut()
            .find(|(file, _)| *file == outcome.file.as_path())
        {
            Some((_, in_file)) => in_file.push(outcome),
            None => files.push((outcome.file.as_path(), vec![outcome])),
        }
    }
    let all: Vec<&Outcome> = outcomes.iter().collect();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{}\">\n",
        attribute(&format!("segflow test {}", pipeline.display())),
        outcomes.len(),
        failed(&all),
        seconds(elapsed),
    );
    for (file, in_file) in &files {
        let suite = file
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let time: Duration = in_file.iter().map(|outcome| outcome.elapsed).sum();
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{}\" file=\"{}\">\n",
            attribute(&format!("{stem}.{suite}")),
            in_file.len(),
            failed(in_file),
            seconds(time),
            attribute(&file.display().to_string()),
        ));
        for outcome in in_file {
            let case = format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\" file=\"{}\"",
                attribute(&format!("{stem}.{suite}")),
                attribute(&format!("{} ({})", outcome.name, outcome.target)),
                seconds(outcome.elapsed),
                attribute(&file.display().to_string()),
            );
            if outcome.failures.is_empty() {
                xml.push_str(&format!("{case}/>\n"));
                continue;
            }
            let first = outcome
                .failures
                .first()
                .and_then(|failure| failure.lines().next())
                .unwrap_or_default();
            xml.push_str(&format!(
                "{case}>\n      <failure message=\"{}\" type=\"expectation\">{}</failure>\n    </testcase>\n",
                attribute(first),
                text(&outcome.failures.join("\n")),
            ));
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.3}", elapsed.as_secs_f64())
}

/// XML 1.0 cannot hold most control characters even escaped; a diff of a string column
/// may show one, so it is replaced by U+FFFD.
fn allowed(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn attribute(text: &str) -> String {
    escape(allowed(text).as_str())
        .replace('\n', "&#10;")
        .replace('\t', "&#9;")
}

fn text(text: &str) -> String {
    escape(allowed(text).as_str()).into_owned()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn outcome(file: &str, name: &str, failures: &[&str]) -> Outcome {
        Outcome {
            file: PathBuf::from(file),
            name: name.into(),
            target: "step daily".into(),
            failures: failures.iter().map(|f| f.to_string()).collect(),
            elapsed: Duration::from_millis(12),
        }
    }

    #[test]
    fn junit_groups_by_file_and_escapes_what_a_diff_holds() {
        let outcomes = [
            outcome("tests/p/a.yaml", "sums per day", &[]),
            outcome(
                "tests/p/a.yaml",
                "refunds <0 & \"quoted\"",
                &["table `daily`: 1 row differs\n  - a\u{1}b\n  + a<b"],
            ),
            outcome("tests/p/b.yaml", "other", &[]),
        ];
        let xml = junit(
            Path::new("pipelines/p.yaml"),
            &outcomes,
            Duration::from_secs(1),
        );
        insta::assert_snapshot!(xml);
    }
}
