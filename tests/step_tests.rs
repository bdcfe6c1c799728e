//! `segflow test`: the shipped step tests pass on their own rows, a failing test prints
//! its diff, a malformed test file is located, and `--generate` writes a test that passes.

mod common;

use common::Project;

const PIPELINE: &str = "pipelines/customer_segments.yaml";

fn copy_with_tests() -> Project {
    let project = Project::copy_of_repository();
    assert!(
        project
            .path("pipelines/tests/customer_segments/steps.yaml")
            .exists()
    );
    project
}

#[test]
fn shipped_tests_pass_without_reading_any_source_file() {
    let project = copy_with_tests();
    // The tests give every row they use: the data files may as well not exist.
    std::fs::remove_dir_all(project.path("fixtures")).unwrap();
    for pipeline in [PIPELINE, "pipelines/online_retail.yaml"] {
        let run = project.segflow(&["test", pipeline]);
        run.assert_exit(0);
        assert!(
            run.stdout.trim_end().ends_with(" passed, 0 failed"),
            "{}",
            run.stdout
        );
        assert!(!run.stdout.contains("FAIL"), "{}", run.stdout);
    }
    let run = project.segflow(&["test", PIPELINE]);
    assert_eq!(
        run.stdout.lines().filter(|l| l.starts_with("ok")).count(),
        8
    );
    assert!(!project.path("out").exists(), "a test publishes nothing");
}

#[test]
fn select_runs_the_tests_of_one_step() {
    let project = copy_with_tests();
    let run = project.segflow(&["test", PIPELINE, "--select", "customer_features"]);
    run.assert_exit(0);
    insta::assert_snapshot!(run.stdout, @r"
    ok    steps.yaml: rfm_of_a_one_off_and_a_repeat_customer_with_a_refund
    ok    steps.yaml: raw_lines_to_features_through_every_step
    2 passed, 0 failed
    ");
    let none = project.segflow(&["test", PIPELINE, "--select", "no_such_test"]);
    none.assert_exit(3);
}

#[test]
fn a_failing_test_shows_missing_unexpected_and_differing_rows() {
    let project = copy_with_tests();
    project.write(
        "pipelines/tests/customer_segments/steps.yaml",
        r#"
tests:
  - name: features_with_mistakes
    step: customer_features
    vars: { as_of: "2011-12-10" }
    given:
      daily_purchases:
        - { customer_id: 1, purchase_day: "2011-12-01", spend: 10.00 }
        - { customer_id: 2, purchase_day: "2011-11-01", spend: 20.00 }
        - { customer_id: 2, purchase_day: "2011-11-11", spend: 30.00 }
        - { customer_id: 3, purchase_day: "2011-11-11", spend: 1.00 }
      customer_refunds: []
    expect:
      key: [customer_id]
      tolerance: 0.001
      rows:
        - { customer_id: 1, frequency: 0, T: 9, monetary_value: 0.0 }
        - { customer_id: 2, frequency: 2, T: 39, monetary_value: 30.0001 }
        - { customer_id: 4, frequency: 0 }
  - name: types_are_checked
    step: customer_features
    given:
      daily_purchases: []
      customer_refunds: []
    expect:
      rows:
        - { customer_id: "not a number" }
"#,
    );
    let run = project.segflow(&["test", PIPELINE]);
    run.assert_exit(4);
    insta::assert_snapshot!(run.stdout, @r"
    FAIL  steps.yaml: features_with_mistakes
          table `customer_features`: 3 rows expected, 3 rows found
            differing   customer_id=2: frequency expected 2, found 1
            missing     {customer_id: 4, frequency: 0}
            unexpected  {customer_id: 3, frequency: 0, T: 29, monetary_value: 0.0}
    FAIL  steps.yaml: types_are_checked
          tests[1].expect row 0, column `customer_id`: `not a number` is not a value of type Int64 (the type of the table's column)
    0 passed, 2 failed
    ");
    assert_eq!(run.stderr.trim(), "error: 2 tests failed");
}

#[test]
fn a_malformed_test_file_is_reported_with_lines_and_keys() {
    let project = copy_with_tests();
    project.write(
        "pipelines/tests/customer_segments/broken.yaml",
        r#"tests:
  - name: unknown_step
    step: daily_purchase
    expect: []
  - name: wrong_table_and_value
    step: daily_purchases
    vars: { as_off: "2011-12-10" }
    given:
      valid_transactions:
        - { customer_id: 1, amount: "lots" }
      clean_transactions: []
    expect: []
"#,
    );
    let run = project.segflow(&["test", PIPELINE]);
    run.assert_exit(3);
    insta::assert_snapshot!(run.stderr, @r"
    error: pipelines/tests/customer_segments/broken.yaml: 4 problems
      pipelines/tests/customer_segments/broken.yaml:3:5: tests[0].step: the pipeline has no step `daily_purchase` (did you mean `daily_purchases`?)
      pipelines/tests/customer_segments/broken.yaml:7:13: tests[1].vars.as_off: the pipeline declares no variable `as_off` (did you mean `as_of`?)
      pipelines/tests/customer_segments/broken.yaml:11:7: tests[1].given.clean_transactions: no step under test reads `clean_transactions` (did you mean `valid_transactions`?); they read: valid_transactions
      pipelines/tests/customer_segments/broken.yaml:10:29: tests[1].given.valid_transactions[0].amount: `lots` is not a value of type Decimal128(33, 2)
    ");
}

#[test]
fn expected_values_without_a_value_stage_are_a_mistake_in_the_test_file() {
    let project = copy_with_tests();
    project.without_value_stage();
    let run = project.segflow(&["test", PIPELINE]);
    run.assert_exit(3);
    assert!(
        run.stderr.contains(
            "tests[7].expect_values: the pipeline has no value stage: nothing to compare these rows with"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn generate_writes_a_test_from_real_rows_that_passes() {
    let project = Project::copy_of_repository();
    std::fs::remove_dir_all(project.path("pipelines/tests")).unwrap();
    let run = project.segflow(&[
        "test",
        PIPELINE,
        "--generate",
        "daily_purchases",
        "--rows",
        "3",
    ]);
    run.assert_exit(0);
    let path = project.path("pipelines/tests/customer_segments/daily_purchases.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("    step: daily_purchases\n"), "{text}");
    // Only the columns the step reads, three rows of its input.
    let given = text.split("    expect:").next().unwrap();
    assert_eq!(given.matches("        - {").count(), 3, "{text}");
    for column in [
        "customer_id",
        "invoiced_at",
        "amount",
        "is_refund",
        "invoice_no",
    ] {
        assert!(given.contains(&format!("{column}: ")), "{column}: {text}");
    }
    assert!(!given.contains("stock_code"), "{text}");

    let test = project.segflow(&["test", PIPELINE]);
    test.assert_exit(0);
    assert!(
        test.stdout
            .contains("ok    daily_purchases.yaml: daily_purchases_on_a_sample")
    );

    let again = project.segflow(&["test", PIPELINE, "--generate", "daily_purchases"]);
    again.assert_exit(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}
