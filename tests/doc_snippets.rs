//! Every whole pipeline written in the README and docs/ (a YAML block with `name:`,
//! `sources:` and `segment:` at its top) passes `segflow check` as written, saved under
//! `pipelines/` of a copy of the repository: a newcomer's first copy and paste works.

mod common;

use common::Project;

/// The ```yaml blocks of a Markdown text, with the line each starts on.
fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```yaml") => {
                current = Some((index + 2, String::new()))
            }
            (Some(_), fence) if fence.starts_with("```") => blocks.extend(current.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn is_whole_pipeline(yaml: &str) -> bool {
    ["name:", "sources:", "segment:"]
        .iter()
        .all(|key| yaml.lines().any(|line| line.starts_with(key)))
}

#[test]
fn every_whole_pipeline_in_the_docs_passes_check() {
    let project = Project::copy_of_repository();
    let mut checked = Vec::new();
    let mut docs = vec![common::repository().join("README.md")];
    for entry in std::fs::read_dir(common::repository().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (line, yaml) in yaml_blocks(&text) {
            if !is_whole_pipeline(&yaml) {
                continue;
            }
            let name = format!(
                "pipelines/snippet_{}_{line}.yaml",
                doc.file_stem().unwrap().to_string_lossy()
            );
            project.write(&name, &yaml);
            let run = project.segflow(&["check", &name]);
            assert_eq!(
                run.code,
                0,
                "{}:{line}: the pipeline does not pass check:\n{}",
                doc.display(),
                run.stderr
            );
            checked.push(format!("{}:{line}", doc.display()));
        }
    }
    assert!(
        checked.iter().any(|place| place.contains("README.md")),
        "the README's pipeline is among those checked: {checked:?}"
    );
}

#[test]
fn the_snippet_reader_finds_blocks_and_whole_pipelines() {
    let markdown =
        "text\n```yaml\nname: a\nsources: []\nsegment: {}\n```\n```yaml\nresources: {}\n```\n";
    let blocks = yaml_blocks(markdown);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].0, 3);
    assert!(is_whole_pipeline(&blocks[0].1));
    assert!(!is_whole_pipeline(&blocks[1].1));
}
