//! The corpus under `tests/broken/`: one pipeline per kind of mistake, each checked for its
//! exit code and its exact message (snapshots under `tests/snapshots/`).

mod common;

use common::{Project, copy_dir, repository};

#[test]
fn every_broken_pipeline_is_rejected_with_its_exact_message() {
    let cases = repository().join("tests/broken");
    let mut names: Vec<String> = std::fs::read_dir(&cases)
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 25, "the corpus has {} cases", names.len());

    // One copy of the project; each case sits beside `fixtures/` so its stores resolve.
    let project = Project::copy_of_repository();
    let root = project.path("");
    let root = root.to_string_lossy();
    for name in names {
        copy_dir(&cases.join(&name), &project.path(&name));
        let pipeline = format!("{name}/pipeline.yaml");
        let extra = std::fs::read_to_string(cases.join(&name).join("args")).unwrap_or_default();
        let mut args = vec!["check", pipeline.as_str()];
        args.extend(extra.split_whitespace());
        let run = project.segflow(&args);
        assert!(run.stdout.is_empty(), "{name}: {}", run.stdout);
        let output = format!(
            "exit code: {}\n{}",
            run.code,
            run.stderr.replace(root.trim_end_matches('/'), "[PROJECT]")
        );
        insta::assert_snapshot!(name.as_str(), output);
    }
}
