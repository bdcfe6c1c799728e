use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::empty::EmptyTable;
use datafusion::prelude::{SessionConfig, SessionContext};

use super::*;

/// `lines` is bucketed on `customer_id` (BIGINT), `exports` on `raw_id` (text as an export
/// writes it); `countries` is a lookup table every bucket reads whole.
async fn analysed(sql: &str) -> Result<Analysis, Refusal> {
    let mut config = SessionConfig::new();
    config.options_mut().sql_parser.collect_spans = true;
    let ctx = SessionContext::new_with_config(config);
    let table = |fields: Vec<Field>| Arc::new(EmptyTable::new(Arc::new(Schema::new(fields))));
    ctx.register_table(
        "lines",
        table(vec![
            Field::new("customer_id", DataType::Int64, true),
            Field::new("invoice_no", DataType::Utf8, true),
            Field::new("country", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
            Field::new("day", DataType::Date32, true),
        ]),
    )
    .unwrap();
    ctx.register_table(
        "exports",
        table(vec![
            Field::new("raw_id", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ]),
    )
    .unwrap();
    ctx.register_table(
        "countries",
        table(vec![
            Field::new("country", DataType::Utf8, true),
            Field::new("region", DataType::Utf8, true),
        ]),
    )
    .unwrap();
    let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
    analyse_plan(
        &plan,
        &|table| match table {
            "lines" => Reach::Bucketed(vec!["customer_id".to_string()]),
            "exports" => Reach::Bucketed(vec!["raw_id".to_string()]),
            _ => Reach::Whole,
        },
        &|_| false,
    )
}

async fn held(sql: &str) -> Vec<usize> {
    match analysed(sql).await {
        Ok(Analysis {
            flow: Flow::Bucketed(keys),
            ..
        }) => keys.into_iter().collect(),
        other => panic!("expected a bucketed result for {sql}, got {other:?}"),
    }
}

async fn refused(sql: &str) -> Refusal {
    match analysed(sql).await {
        Err(refusal) => refusal,
        Ok(analysis) => panic!("expected {sql} to be refused, got {analysis:?}"),
    }
}

#[tokio::test]
async fn row_by_row_steps_keep_the_key_where_it_goes() {
    assert_eq!(
        held("SELECT amount, customer_id AS c FROM lines WHERE amount > 0").await,
        [1]
    );
    // A step that drops the key still has its rows split by it, but holds it nowhere.
    assert_eq!(held("SELECT amount FROM lines").await, Vec::<usize>::new());
}

#[tokio::test]
async fn groupings_that_include_the_key_are_accepted() {
    assert_eq!(
        held("SELECT day, customer_id, sum(amount) FROM lines GROUP BY day, customer_id").await,
        [1]
    );
    assert_eq!(
        held("SELECT DISTINCT invoice_no, customer_id FROM lines").await,
        [1]
    );
    assert_eq!(
        held("SELECT customer_id, count(DISTINCT invoice_no) FROM lines GROUP BY customer_id")
            .await,
        [0]
    );
}

#[tokio::test]
async fn joins_on_the_key_and_windows_partitioned_by_it_are_accepted() {
    let firsts = "WITH firsts AS (SELECT customer_id, min(day) AS first_day FROM lines GROUP BY customer_id) \
                  SELECT l.customer_id, l.day, f.customer_id AS again FROM lines l JOIN firsts f ON f.customer_id = l.customer_id";
    assert_eq!(held(firsts).await, [0, 2]);
    assert_eq!(
        held("SELECT customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY day) AS n FROM lines").await,
        [0]
    );
}

#[tokio::test]
async fn a_lookup_table_can_be_joined_where_the_bucketed_side_keeps_the_rows() {
    for join in ["JOIN", "LEFT JOIN"] {
        let sql = format!(
            "SELECT l.customer_id, c.region FROM lines l {join} countries c ON c.country = l.country"
        );
        assert_eq!(held(&sql).await, [0], "{join}");
    }
    let whole = refused(
        "SELECT c.region, l.customer_id FROM countries c LEFT JOIN lines l ON c.country = l.country",
    )
    .await;
    assert_eq!(whole.operator, "Join");
    assert!(whole.reason.contains("once per bucket"), "{}", whole.reason);
}

#[tokio::test]
async fn a_text_key_cast_to_bigint_is_held_when_buckets_parse_it() {
    let analysis =
        analysed("SELECT CAST(raw_id AS BIGINT) AS id, sum(amount) FROM exports GROUP BY 1")
            .await
            .unwrap();
    assert_eq!(analysis.flow, Flow::Bucketed([0].into()));
    assert!(analysis.parses_key);
    // Text kept as text needs no parsing.
    let analysis = analysed("SELECT raw_id, sum(amount) FROM exports GROUP BY raw_id")
        .await
        .unwrap();
    assert!(!analysis.parses_key);
}

#[tokio::test]
async fn casts_that_can_merge_two_keys_do_not_hold_the_key() {
    for key in [
        "upper(raw_id)",
        "TRY_CAST(raw_id AS INT)",
        "CAST(raw_id AS DOUBLE)",
    ] {
        let sql = format!("SELECT {key} AS k, sum(amount) FROM exports GROUP BY 1");
        let refusal = refused(&sql).await;
        assert_eq!(refusal.operator, "Aggregate", "{key}");
        assert!(
            refusal.reason.contains("does not include the key"),
            "{key}: {}",
            refusal.reason
        );
    }
    // Widening keeps it.
    assert_eq!(
        held("SELECT CAST(CAST(customer_id AS INT) AS BIGINT) FROM lines").await,
        Vec::<usize>::new(),
        "an INT narrowing loses it, and the widening after cannot bring it back"
    );
}

#[tokio::test]
async fn whole_table_operators_are_refused_with_what_they_need() {
    let total = refused("SELECT count(*) AS lines, sum(amount) FROM lines").await;
    assert_eq!(total.operator, "Aggregate");
    assert!(total.reason.contains("over all rows"), "{}", total.reason);

    let by_country = refused("SELECT country,\n  sum(amount)\nFROM lines\nGROUP BY country").await;
    assert_eq!(by_country.operator, "Aggregate");
    assert!(
        by_country.reason.contains("GROUP BY lines.country"),
        "{}",
        by_country.reason
    );
    assert_eq!(by_country.line, Some(4), "the GROUP BY line");

    let top = refused("SELECT customer_id FROM lines ORDER BY amount DESC LIMIT 10").await;
    assert!(matches!(top.operator, "Sort" | "Limit"), "{top:?}");
    assert!(top.reason.contains("LIMIT"), "{}", top.reason);

    let not_on_key =
        refused("SELECT a.customer_id FROM lines a JOIN lines b ON a.invoice_no = b.invoice_no")
            .await;
    assert_eq!(not_on_key.operator, "Join");
    assert!(
        not_on_key.reason.contains("not on the key"),
        "{}",
        not_on_key.reason
    );

    let window = refused("SELECT customer_id, rank() OVER (ORDER BY amount) AS r FROM lines").await;
    assert_eq!(window.operator, "Window");
    assert!(
        window.reason.contains("no PARTITION BY"),
        "{}",
        window.reason
    );

    let union = refused(
        "SELECT customer_id, country FROM lines UNION ALL SELECT 0, country FROM countries",
    )
    .await;
    assert_eq!(union.operator, "Union");
}

#[tokio::test]
async fn a_step_of_lookup_tables_alone_is_whole() {
    let analysis = analysed("SELECT region, count(*) FROM countries GROUP BY region")
        .await
        .unwrap();
    assert_eq!(analysis.flow, Flow::Whole);
}

#[test]
fn a_keyword_is_found_as_a_word_not_in_text() {
    let sql = "SELECT 'LIMIT' AS word -- LIMIT\nFROM t\nLIMIT 5";
    assert_eq!(keyword_line(sql, "limit"), Some(3));
    assert_eq!(keyword_line(sql, "OVER"), None);
}

#[tokio::test]
async fn rows_without_a_key_are_grouped_unless_a_filter_drops_them_first() {
    let grouped = |sql: &'static str| async move {
        let analysis = analysed(sql).await.unwrap();
        (analysis.groups_null_keys, analysis.null_free)
    };
    // A null customer is one group of its own: all its rows must share a bucket.
    assert_eq!(
        grouped("SELECT customer_id, sum(amount) FROM lines GROUP BY customer_id").await,
        (true, false)
    );
    assert_eq!(
        grouped("SELECT DISTINCT customer_id, invoice_no FROM lines").await,
        (true, false)
    );
    // Dropped before grouping (as the example drops guest orders): they can go anywhere.
    assert_eq!(
        grouped(
            "SELECT customer_id, sum(amount) FROM lines WHERE customer_id IS NOT NULL AND amount > 0 GROUP BY customer_id"
        )
        .await,
        (false, true)
    );
    assert_eq!(
        grouped(
            "SELECT DISTINCT CAST(raw_id AS BIGINT) AS id, amount FROM exports WHERE try_cast(raw_id AS BIGINT) IS NOT NULL"
        )
        .await,
        (false, true)
    );
    // IS DISTINCT FROM keeps a null key; a filter on another column keeps it too.
    assert_eq!(
        grouped(
            "SELECT customer_id, count(*) FROM lines WHERE customer_id IS DISTINCT FROM 7 GROUP BY customer_id"
        )
        .await,
        (true, false)
    );
    assert_eq!(
        grouped(
            "SELECT customer_id, count(*) FROM lines WHERE amount IS NOT NULL GROUP BY customer_id"
        )
        .await,
        (true, false)
    );
    // Row by row, or a join (a null key matches nothing): nothing groups them.
    assert_eq!(
        grouped("SELECT customer_id, amount * 2 AS doubled FROM lines").await,
        (false, false)
    );
    assert_eq!(
        grouped(
            "SELECT l.customer_id, c.region FROM lines l JOIN countries c ON l.country = c.country"
        )
        .await,
        (false, false)
    );
}
