use std::collections::BTreeMap;
use std::path::Path;

use super::*;

const VALID: &str = r#"
name: shop
vars:
  as_of: "2011-12-10"
stores:
  data: { url: "file://../data" }
  out: { url: "s3://bucket/prefix" }
sources:
  - name: transactions
    store: data
    path: retail/*.csv
    format: csv
    csv: { delimiter: ";" }
    schema:
      - { name: id, type: bigint }
      - { name: at, type: string, nullable: false }
steps:
  - name: features
    kind: merge
    sql: "SELECT id FROM transactions WHERE at < '${as_of}'"
segment:
  input: features
  key: id
  features: [x, y]
  k: 3
  seed: 7
  output: { store: out, path: "runs/${as_of}" }
"#;

fn load_text(dir: &Path, text: &str, overrides: &[(&str, &str)]) -> Result<Pipeline> {
    let file = dir.join("pipelines").join("p.yaml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, text).unwrap();
    let overrides: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load(&file, &overrides)
}

fn problems(error: PipelineError) -> Vec<(String, String)> {
    match error {
        PipelineError::Invalid { problems, .. } => problems
            .into_iter()
            .map(|problem| (problem.key, problem.message))
            .collect(),
        other => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn resolves_a_valid_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = load_text(dir.path(), VALID, &[]).unwrap();
    let data_root = std::path::absolute(dir.path().join("data")).unwrap();
    assert_eq!(pipeline.stores[0].url.to_file_path().unwrap(), data_root);
    assert_eq!(
        pipeline.sources[0].location.url.as_str(),
        format!("{}retail/*.csv", pipeline.stores[0].url)
    );
    assert_eq!(pipeline.sources[0].csv.delimiter, b';');
    assert_eq!(pipeline.sources[0].extension, ".csv");
    assert_eq!(
        pipeline.steps[0].sql,
        "SELECT id FROM transactions WHERE at < '2011-12-10'"
    );
    assert_eq!(
        pipeline.output.url.as_str(),
        "s3://bucket/prefix/runs/2011-12-10/"
    );
    assert_eq!(pipeline.segment.as_ref().unwrap().restarts, 1);
}

#[test]
fn var_override_replaces_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = load_text(dir.path(), VALID, &[("as_of", "2012-01-01")]).unwrap();
    assert!(pipeline.steps[0].sql.ends_with("'2012-01-01'"));
}

#[test]
fn overriding_an_undeclared_variable_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let error = load_text(dir.path(), VALID, &[("asof", "2012-01-01")]).unwrap_err();
    assert_eq!(
        problems(error),
        [(
            "vars".to_string(),
            "--var asof=... sets a variable the pipeline does not declare (declared: as_of)"
                .to_string()
        )]
    );
}

#[test]
fn unknown_key_names_line_key_and_near_miss() {
    let dir = tempfile::tempdir().unwrap();
    let text = VALID.replace("    kind: merge", "    kind: merge\n    sqll: x");
    let error = load_text(dir.path(), &text, &[]).unwrap_err();
    let PipelineError::Syntax {
        line, key, message, ..
    } = error
    else {
        panic!("expected a syntax error, got {error}");
    };
    assert_eq!(line, 20);
    assert_eq!(key, "steps[0].sqll");
    assert!(
        message.starts_with("unknown key `sqll` (did you mean `sql`?)"),
        "{message}"
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let text = VALID
        .replace("k: 3", "k: 1")
        .replace("store: data", "store: dta")
        .replace("name: features\n", "name: Features\n")
        .replace("${as_of}'\"", "${asof}'\"");
    let found = problems(load_text(dir.path(), &text, &[]).unwrap_err());
    let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "sources[0].store",
            "steps[0].name",
            "steps[0].sql",
            "segment.k"
        ],
        "{found:?}"
    );
    assert_eq!(found[0].1, "unknown store `dta` (did you mean `data`?)");
}

#[test]
fn missing_sql_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let text = VALID.replace(
        "sql: \"SELECT id FROM transactions WHERE at < '${as_of}'\"",
        "sql_file: ../sql/nope.sql",
    );
    let found = problems(load_text(dir.path(), &text, &[]).unwrap_err());
    assert_eq!(found[0].0, "steps[0].sql_file");
    assert!(found[0].1.contains("nope.sql"), "{}", found[0].1);
}

#[test]
fn sql_file_is_read_relative_to_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sql")).unwrap();
    std::fs::write(
        dir.path().join("sql/f.sql"),
        "SELECT * FROM transactions -- ${as_of}",
    )
    .unwrap();
    let text = VALID.replace(
        "sql: \"SELECT id FROM transactions WHERE at < '${as_of}'\"",
        "sql_file: ../sql/f.sql",
    );
    let pipeline = load_text(dir.path(), &text, &[]).unwrap();
    assert_eq!(
        pipeline.steps[0].sql,
        "SELECT * FROM transactions -- 2011-12-10"
    );
    assert!(pipeline.steps[0].sql_origin().ends_with("sql/f.sql"));
}

#[test]
fn a_published_step_is_named_after_itself_unless_it_names_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let step = "    sql: \"SELECT id FROM transactions WHERE at < '${as_of}'\"\n";
    let published = |publish: &str| {
        let text = VALID.replace(step, &format!("{step}    publish: {publish}\n"));
        load_text(dir.path(), &text, &[])
    };
    let flag = published("true").unwrap();
    assert_eq!(
        flag.steps[0].publish,
        Some(PublishedStep {
            table: "features".to_string(),
            partition_by: Vec::new()
        })
    );
    assert_eq!(flag.read_after_steps(), ["features"]);
    assert_eq!(published("false").unwrap().steps[0].publish, None);
    let named = published("{table: customer_features, partition_by: [country]}").unwrap();
    assert_eq!(
        named.steps[0].publish.as_ref().unwrap().table,
        "customer_features"
    );
    let found = problems(published("{table: Features-1, partition_by: [x, x]}").unwrap_err());
    assert_eq!(
        found,
        [
            (
                "steps[0].publish.table".to_string(),
                "table name `Features-1` must be lower-case letters, digits and `_`, starting with a letter (it names the table's folder)".to_string()
            ),
            (
                "steps[0].publish.partition_by[1]".to_string(),
                "`x` is listed twice".to_string()
            ),
        ]
    );
}

#[test]
fn a_fixed_model_comes_from_an_earlier_run_and_excludes_a_warm_start() {
    let dir = tempfile::tempdir().unwrap();
    let with = |extra: &str| {
        let text = VALID.replace("  k: 3\n", &format!("  k: 3\n{extra}"));
        load_text(dir.path(), &text, &[])
    };
    let fixed = with("  model: {run: monthly}\n").unwrap();
    let segment = fixed.segment.unwrap();
    assert!(segment.fixed_model);
    assert_eq!(
        segment.warm_start,
        Some(WarmStart::Run("monthly".to_string()))
    );
    let found = problems(with("  model: previous\n  warm_start: previous\n").unwrap_err());
    assert_eq!(found[0].0, "segment.model");
    assert!(
        found[0].1.starts_with("give either `model`"),
        "{}",
        found[0].1
    );
    let text = VALID.replace("  k: 3\n", "  k: {min: 2, max: 4}\n  model: previous\n");
    let found = problems(load_text(dir.path(), &text, &[]).unwrap_err());
    assert_eq!(found[0].0, "segment.model");
    assert!(
        found[0].1.contains("k cannot be chosen from a range"),
        "{}",
        found[0].1
    );
}

#[test]
fn sources_and_steps_share_one_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let text = VALID.replace("name: features\n", "name: transactions\n");
    let found = problems(load_text(dir.path(), &text, &[]).unwrap_err());
    assert_eq!(found[0].0, "steps[0].name");
    assert!(found[0].1.contains("sources[0]"), "{}", found[0].1);
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let error = load_text(dir.path(), "name: [unclosed\n", &[]).unwrap_err();
    assert!(matches!(error, PipelineError::Syntax { .. }), "{error}");
    assert!(error.to_string().contains("p.yaml:"), "{error}");
}

#[test]
fn unsupported_scheme_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let text = VALID.replace("s3://bucket/prefix", "ftp://host/x");
    let found = problems(load_text(dir.path(), &text, &[]).unwrap_err());
    assert_eq!(found[0].0, "stores.out.url");
    assert!(found[0].1.starts_with("unsupported scheme `ftp://`"));
}

#[test]
fn engine_key_reads_local_ballista_and_standalone() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = load_text(dir.path(), VALID, &[]).unwrap();
    assert_eq!(
        pipeline.engine, None,
        "no key: the command line or the default decides"
    );
    let with_engine = |engine: &str| {
        let text = VALID.replace(
            "name: shop\n",
            &format!("name: shop\nengine: \"{engine}\"\n"),
        );
        load_text(dir.path(), &text, &[])
    };
    assert_eq!(with_engine("local").unwrap().engine, Some(Engine::Local));
    assert_eq!(
        with_engine("ballista://scheduler.internal:50051")
            .unwrap()
            .engine,
        Some(Engine::Ballista {
            scheduler: "http://scheduler.internal:50051".to_string()
        })
    );
    assert_eq!(
        with_engine("ballista://10.0.0.7").unwrap().engine,
        Some(Engine::Ballista {
            scheduler: "http://10.0.0.7:50050".to_string()
        }),
        "the scheduler's default port"
    );
    assert_eq!(
        with_engine("ballista-standalone").unwrap().engine,
        Some(Engine::BallistaStandalone)
    );

    let error = with_engine("spark://host:7077").unwrap_err();
    let found = problems(error);
    assert_eq!(found[0].0, "engine");
    assert!(
        found[0].1.contains("`spark://host:7077` is not an engine"),
        "{}",
        found[0].1
    );
    let error = with_engine("ballista://host:50050/jobs").unwrap_err();
    assert!(
        error.to_string().contains("p.yaml:3:1: engine:"),
        "names the file, line and key: {error}"
    );
    assert!(
        error.to_string().contains("a host and a port only"),
        "{error}"
    );
}

#[test]
fn engine_names_round_trip() {
    for text in ["local", "ballista://host:50050", "ballista-standalone"] {
        assert_eq!(Engine::parse(text).unwrap().describe(), text);
    }
    assert!(Engine::parse("ballista://").is_err());
}

#[test]
fn masks_hide_rendered_values_and_long_secrets_but_never_search_for_short_ones() {
    let masks = Masks::new(vec![
        ("3".to_string(), "***".to_string()),
        ("s3://lake-3/".to_string(), "s3://lake-***/".to_string()),
        ("tok-9f8e7d".to_string(), "***".to_string()),
        (
            "WHERE t = 'tok-9f8e7d'".to_string(),
            "WHERE t = '***'".to_string(),
        ),
    ]);
    assert_eq!(
        masks.apply("wrote s3://lake-3/out/part-0.parquet: 30000 rows, inertia=87.35"),
        "wrote s3://lake-***/out/part-0.parquet: 30000 rows, inertia=87.35"
    );
    assert_eq!(
        masks.apply("No field named \"tok-9f8e7d\""),
        "No field named \"***\""
    );
}
