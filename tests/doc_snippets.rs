//! Every whole pipeline written in the README and docs/ (a YAML block with `name:`,
//! `sources:` and `segment:` at its top) passes `segflow check` as written, saved under
//! `pipelines/` of a copy of the repository: a newcomer's first copy and paste works.

mod common;

use common::{Project, is_whole_pipeline, yaml_blocks};

#[test]
fn every_whole_pipeline_in_the_docs_passes_check() {
    let project = Project::copy_of_repository();
    let mut checked = Vec::new();
    for (doc, line, yaml) in common::doc_pipelines() {
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
