//! Whether a step can run bucket by bucket: proved from its optimised logical plan.
//!
//! A table split by a hash of the customer key into buckets can be processed one bucket
//! at a time by every step that never needs two customers' rows together: row-by-row
//! operators (projections, filters), and aggregates, joins and windows whose keys include
//! the customer key. [`analyse_plan`] walks a plan and either says which of its output
//! columns still hold the key, or names the first operator that needs the whole table and
//! why. It knows nothing of how buckets are made or run: it is a leaf.
//!
//! "Holds the key" is stricter than "is computed from it": a column holds the key when
//! equal values in it can only come from rows of one bucket. The key itself, renamed or
//! widened, or cast to text, does; `upper(key)` or `key % 10` does not (two keys can give
//! one value). Text cast to BIGINT does too, provided buckets are made from the text
//! parsed as a BIGINT (`"012"` and `"12"` both parse to 12, so they must share a bucket):
//! [`Analysis::parses_key`] says when a plan relies on that.

use std::collections::BTreeSet;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Spans};
use datafusion::logical_expr::expr::{Alias, Cast, TryCast, WindowFunction};
use datafusion::logical_expr::{Distinct, Expr, ExprSchemable, JoinType, LogicalPlan, Operator};

/// How a table a plan reads reaches one bucket's run.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    /// Split by the key: a bucket's run sees the rows of its keys; these columns hold the
    /// key.
    Bucketed(Vec<String>),
    /// Read whole by every bucket's run (a lookup table, or a step of whole tables).
    Whole,
}

/// Why a plan cannot run bucket by bucket: the operator and what it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The operator as DataFusion names it in a plan (`Aggregate`, `Join`, `Limit`, ...).
    pub operator: &'static str,
    pub reason: String,
    /// Where in the SQL, when the plan knows (DataFusion's column spans).
    pub line: Option<u64>,
    /// A word of the SQL to look for when the plan does not know where it came from.
    pub keyword: &'static str,
}

/// What a plan does with bucketed rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Flow {
    /// Its result is split by the key too; these output columns (by position) hold it.
    Bucketed(BTreeSet<usize>),
    /// It reads no bucketed table: the same result in every bucket's run.
    Whole,
}

/// The outcome of [`analyse_plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub flow: Flow,
    /// A text key is cast to BIGINT somewhere: buckets must be made from the parsed value.
    pub parses_key: bool,
    /// An aggregate, DISTINCT or window may see rows whose key is null: rows without a key
    /// must then all be in one bucket, as they are one group. When no operator does (the
    /// rows without a key are filtered out before any grouping, as guest orders are), they
    /// can be spread over the buckets. Joins never match a null key, so never group them.
    pub groups_null_keys: bool,
    /// No row the plan gives has a null in its key columns.
    pub null_free: bool,
}

/// Walks `plan` bottom-up; `reach` tells how each table it scans arrives (by table name),
/// `null_free` which bucketed tables have no row with a null key.
pub fn analyse_plan(
    plan: &LogicalPlan,
    reach: &dyn Fn(&str) -> Reach,
    null_free: &dyn Fn(&str) -> bool,
) -> Result<Analysis, Refusal> {
    let mut walk = Walk {
        reach,
        null_free_table: null_free,
        parses_key: false,
        null_free: std::collections::HashSet::new(),
        groups_null_keys: false,
    };
    let flow = walk.flow(plan)?;
    Ok(Analysis {
        null_free: walk.is_null_free(plan),
        flow,
        parses_key: walk.parses_key,
        groups_null_keys: walk.groups_null_keys,
    })
}

struct Walk<'a> {
    reach: &'a dyn Fn(&str) -> Reach,
    null_free_table: &'a dyn Fn(&str) -> bool,
    parses_key: bool,
    /// The plans walked whose rows have no null key (by address: they live as long as the
    /// walk).
    null_free: std::collections::HashSet<usize>,
    groups_null_keys: bool,
}

impl Walk<'_> {
    fn flow(&mut self, plan: &LogicalPlan) -> Result<Flow, Refusal> {
        let flow = self.flow_of(plan)?;
        if self.keys_null_free(plan, &flow) {
            self.null_free.insert(plan as *const LogicalPlan as usize);
        }
        if let Flow::Bucketed(_) = &flow {
            let groups = match plan {
                LogicalPlan::Aggregate(aggregate) => Some(&aggregate.input),
                LogicalPlan::Distinct(Distinct::All(input)) => Some(input),
                LogicalPlan::Distinct(Distinct::On(on)) => Some(&on.input),
                LogicalPlan::Window(window) => Some(&window.input),
                _ => None,
            };
            if groups.is_some_and(|input| !self.is_null_free(input)) {
                self.groups_null_keys = true;
            }
        }
        Ok(flow)
    }

    fn is_null_free(&self, plan: &LogicalPlan) -> bool {
        self.null_free
            .contains(&(plan as *const LogicalPlan as usize))
    }

    /// Whether no row of `plan` (whose rows flow as `flow`) has a null key: its bucketed
    /// tables have none, or a filter drops the rows whose key is null. Conservative: an
    /// operator not listed may give null keys.
    fn keys_null_free(&self, plan: &LogicalPlan, flow: &Flow) -> bool {
        let Flow::Bucketed(keys) = flow else {
            return true;
        };
        match plan {
            LogicalPlan::TableScan(scan) => (self.null_free_table)(scan.table_name.table()),
            LogicalPlan::Filter(filter) => {
                self.is_null_free(&filter.input)
                    || rejects_null_key(&filter.predicate, filter.input.schema(), keys)
            }
            LogicalPlan::Projection(_)
            | LogicalPlan::SubqueryAlias(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Aggregate(_)
            | LogicalPlan::Distinct(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Join(_)
            | LogicalPlan::Union(_)
            | LogicalPlan::Unnest(_)
            | LogicalPlan::Subquery(_) => plan
                .inputs()
                .into_iter()
                .all(|input| self.is_null_free(input)),
            _ => false,
        }
    }

    fn flow_of(&mut self, plan: &LogicalPlan) -> Result<Flow, Refusal> {
        match plan {
            LogicalPlan::TableScan(scan) => {
                match (self.reach)(scan.table_name.table()) {
                    Reach::Whole => Ok(Flow::Whole),
                    Reach::Bucketed(keys) => {
                        if scan.fetch.is_some() {
                            return Err(refusal(
                                "Limit",
                                format!(
                                    "LIMIT takes the first rows of all of `{}`, not of one bucket",
                                    scan.table_name.table()
                                ),
                                None,
                                "LIMIT",
                            ));
                        }
                        Ok(Flow::Bucketed(
                            scan.projected_schema
                                .fields()
                                .iter()
                                .enumerate()
                                .filter(|(_, field)| keys.contains(field.name()))
                                .map(|(index, _)| index)
                                .collect(),
                        ))
                    }
                }
            }
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => Ok(Flow::Whole),
            // Row by row, or the same rows under other names: the key stays where it is.
            LogicalPlan::Filter(filter) => {
                self.no_subquery(&filter.predicate)?;
                self.flow(&filter.input)
            }
            LogicalPlan::SubqueryAlias(alias) => self.flow(&alias.input),
            LogicalPlan::Repartition(repartition) => self.flow(&repartition.input),
            LogicalPlan::Sort(sort) => {
                let flow = self.flow(&sort.input)?;
                if sort.fetch.is_some() && flow != Flow::Whole {
                    return Err(refusal(
                        "Sort",
                        "ORDER BY with LIMIT keeps the first rows of the whole table, not of one bucket".to_string(),
                        sort.expr.iter().find_map(|sort| first_line(&sort.expr)),
                        "LIMIT",
                    ));
                }
                // Without a limit the order is lost once buckets are put together, as a
                // table's order is by any parallel writer: the rows are the same.
                Ok(flow)
            }
            LogicalPlan::Limit(limit) => {
                let flow = self.flow(&limit.input)?;
                if flow != Flow::Whole {
                    return Err(refusal(
                        "Limit",
                        "LIMIT / OFFSET count rows of the whole table, not of one bucket"
                            .to_string(),
                        None,
                        "LIMIT",
                    ));
                }
                Ok(flow)
            }
            LogicalPlan::Projection(projection) => {
                let Flow::Bucketed(keys) = self.flow(&projection.input)? else {
                    return Ok(Flow::Whole);
                };
                let input = projection.input.schema();
                let mut held = BTreeSet::new();
                for (index, expr) in projection.expr.iter().enumerate() {
                    self.no_subquery(expr)?;
                    if self.holds_key(expr, input, &keys) {
                        held.insert(index);
                    }
                }
                Ok(Flow::Bucketed(held))
            }
            LogicalPlan::Aggregate(aggregate) => {
                let Flow::Bucketed(keys) = self.flow(&aggregate.input)? else {
                    return Ok(Flow::Whole);
                };
                let input = aggregate.input.schema();
                let line = aggregate
                    .group_expr
                    .iter()
                    .chain(&aggregate.aggr_expr)
                    .find_map(first_line);
                if aggregate.group_expr.is_empty() {
                    return Err(refusal(
                        "Aggregate",
                        format!(
                            "{} over all rows (no GROUP BY): every bucket would give its own total",
                            names(&aggregate.aggr_expr)
                        ),
                        line,
                        "SELECT",
                    ));
                }
                if aggregate
                    .group_expr
                    .iter()
                    .any(|expr| matches!(expr, Expr::GroupingSet(_)))
                {
                    return Err(refusal(
                        "Aggregate",
                        "GROUPING SETS / ROLLUP / CUBE add totals over several keys".to_string(),
                        line,
                        "GROUP",
                    ));
                }
                let held: BTreeSet<usize> = aggregate
                    .group_expr
                    .iter()
                    .enumerate()
                    .filter(|(_, expr)| self.holds_key(expr, input, &keys))
                    .map(|(index, _)| index)
                    .collect();
                if held.is_empty() {
                    return Err(refusal(
                        "Aggregate",
                        format!(
                            "GROUP BY {} does not include the key, so one group can have rows in every bucket",
                            names(&aggregate.group_expr)
                        ),
                        line,
                        "GROUP",
                    ));
                }
                Ok(Flow::Bucketed(held))
            }
            LogicalPlan::Distinct(Distinct::All(input)) => match self.flow(input)? {
                Flow::Whole => Ok(Flow::Whole),
                Flow::Bucketed(keys) if keys.is_empty() => Err(refusal(
                    "Distinct",
                    "SELECT DISTINCT over columns without the key: equal rows can be in every bucket".to_string(),
                    None,
                    "DISTINCT",
                )),
                flow => Ok(flow),
            },
            LogicalPlan::Distinct(Distinct::On(on)) => {
                let Flow::Bucketed(keys) = self.flow(&on.input)? else {
                    return Ok(Flow::Whole);
                };
                let input = on.input.schema();
                if !on
                    .on_expr
                    .iter()
                    .any(|expr| self.holds_key(expr, input, &keys))
                {
                    return Err(refusal(
                        "Distinct",
                        format!(
                            "DISTINCT ON {} does not include the key",
                            names(&on.on_expr)
                        ),
                        on.on_expr.iter().find_map(first_line),
                        "DISTINCT",
                    ));
                }
                Ok(Flow::Bucketed(
                    on.select_expr
                        .iter()
                        .enumerate()
                        .filter(|(_, expr)| self.holds_key(expr, input, &keys))
                        .map(|(index, _)| index)
                        .collect(),
                ))
            }
            LogicalPlan::Window(window) => {
                let Flow::Bucketed(keys) = self.flow(&window.input)? else {
                    return Ok(Flow::Whole);
                };
                let input = window.input.schema();
                for expr in &window.window_expr {
                    let Some(function) = window_function(expr) else {
                        continue;
                    };
                    let partition_by = &function.params.partition_by;
                    if !partition_by
                        .iter()
                        .any(|expr| self.holds_key(expr, input, &keys))
                    {
                        return Err(refusal(
                            "Window",
                            format!(
                                "{} is not partitioned by the key ({}), so it reads rows of every bucket",
                                function.fun.name(),
                                if partition_by.is_empty() {
                                    "no PARTITION BY".to_string()
                                } else {
                                    format!("PARTITION BY {}", names(partition_by))
                                }
                            ),
                            function
                                .params
                                .args
                                .iter()
                                .chain(partition_by)
                                .find_map(first_line),
                            "OVER",
                        ));
                    }
                }
                // The window's columns come after the input's, which keep their places.
                Ok(Flow::Bucketed(keys))
            }
            LogicalPlan::Join(join) => {
                let left = self.flow(&join.left)?;
                let right = self.flow(&join.right)?;
                let left_width = join.left.schema().fields().len();
                let line = join
                    .on
                    .iter()
                    .find_map(|(l, r)| first_line(l).or_else(|| first_line(r)));
                let shifted =
                    |keys: &BTreeSet<usize>| keys.iter().map(|k| k + left_width).collect();
                match (left, right) {
                    (Flow::Whole, Flow::Whole) => Ok(Flow::Whole),
                    (Flow::Bucketed(left_keys), Flow::Bucketed(right_keys)) => {
                        let on_key = join.on.iter().any(|(l, r)| {
                            self.holds_key(l, join.left.schema(), &left_keys)
                                && self.holds_key(r, join.right.schema(), &right_keys)
                        });
                        if !on_key {
                            return Err(refusal(
                                "Join",
                                format!(
                                    "the join of two bucketed tables is {}, so matching rows can be in different buckets",
                                    if join.on.is_empty() {
                                        "on no equality of keys".to_string()
                                    } else {
                                        format!(
                                            "on {}, not on the key",
                                            join.on
                                                .iter()
                                                .map(|(l, r)| format!("{l} = {r}"))
                                                .collect::<Vec<_>>()
                                                .join(" AND ")
                                        )
                                    }
                                ),
                                line,
                                "JOIN",
                            ));
                        }
                        // A side an outer join can fill with nulls no longer holds the key:
                        // its unmatched rows' nulls come from every bucket.
                        let held = match join.join_type {
                            JoinType::Inner => {
                                left_keys.union(&shifted(&right_keys)).copied().collect()
                            }
                            JoinType::Left
                            | JoinType::LeftSemi
                            | JoinType::LeftAnti
                            | JoinType::LeftMark => left_keys,
                            JoinType::Right => shifted(&right_keys),
                            JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                                right_keys
                            }
                            JoinType::Full => BTreeSet::new(),
                        };
                        Ok(Flow::Bucketed(held))
                    }
                    // One side whole, read by every bucket: right for the rows the bucketed
                    // side keeps, wrong for a whole side's rows kept without a match (each
                    // bucket would keep them again).
                    (Flow::Bucketed(keys), Flow::Whole) => match join.join_type {
                        JoinType::Inner
                        | JoinType::Left
                        | JoinType::LeftSemi
                        | JoinType::LeftAnti
                        | JoinType::LeftMark => Ok(Flow::Bucketed(keys)),
                        other => Err(whole_side_kept(other, "right", line)),
                    },
                    (Flow::Whole, Flow::Bucketed(keys)) => match join.join_type {
                        JoinType::Inner | JoinType::Right => Ok(Flow::Bucketed(shifted(&keys))),
                        JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                            Ok(Flow::Bucketed(keys))
                        }
                        other => Err(whole_side_kept(other, "left", line)),
                    },
                }
            }
            LogicalPlan::Union(union) => {
                let flows = union
                    .inputs
                    .iter()
                    .map(|input| self.flow(input))
                    .collect::<Result<Vec<_>, _>>()?;
                if flows.iter().all(|flow| *flow == Flow::Whole) {
                    return Ok(Flow::Whole);
                }
                let mut held: Option<BTreeSet<usize>> = None;
                for flow in flows {
                    let Flow::Bucketed(keys) = flow else {
                        return Err(refusal(
                            "Union",
                            "UNION of a bucketed table and one that is not: every bucket would add the other's rows again".to_string(),
                            None,
                            "UNION",
                        ));
                    };
                    held = Some(match held {
                        None => keys,
                        Some(held) => held.intersection(&keys).copied().collect(),
                    });
                }
                Ok(Flow::Bucketed(held.unwrap_or_default()))
            }
            LogicalPlan::Unnest(unnest) => {
                let Flow::Bucketed(keys) = self.flow(&unnest.input)? else {
                    return Ok(Flow::Whole);
                };
                // One row becomes several of the same customer; columns keep their names.
                let input = unnest.input.schema();
                let kept: Vec<&str> = keys
                    .iter()
                    .map(|&index| input.field(index).name().as_str())
                    .collect();
                Ok(Flow::Bucketed(
                    unnest
                        .schema
                        .fields()
                        .iter()
                        .enumerate()
                        .filter(|(_, field)| kept.contains(&field.name().as_str()))
                        .map(|(index, _)| index)
                        .collect(),
                ))
            }
            LogicalPlan::Subquery(subquery) => self.flow(&subquery.subquery),
            other => {
                let flows = other
                    .inputs()
                    .into_iter()
                    .map(|input| self.flow(input))
                    .collect::<Result<Vec<_>, _>>()?;
                if flows.iter().all(|flow| *flow == Flow::Whole) {
                    return Ok(Flow::Whole);
                }
                Err(refusal(
                    operator_name(other),
                    "an operator segflow cannot prove keeps customers apart".to_string(),
                    None,
                    "SELECT",
                ))
            }
        }
    }

    /// The optimiser turns subqueries into joins; one it could not is read whole by every
    /// row, from every bucket.
    fn no_subquery(&self, expr: &Expr) -> Result<(), Refusal> {
        let mut found = false;
        expr.apply(|e| {
            if matches!(
                e,
                Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
            ) {
                found = true;
            }
            Ok(if found {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
        .expect("the closure does not fail");
        if found {
            return Err(refusal(
                "Subquery",
                "a correlated subquery DataFusion could not turn into a join".to_string(),
                first_line(expr),
                "SELECT",
            ));
        }
        Ok(())
    }

    /// Whether `expr` over `schema` holds the key: one of `keys`, renamed, or cast so that
    /// equal results come from equal keys.
    fn holds_key(&mut self, expr: &Expr, schema: &DFSchema, keys: &BTreeSet<usize>) -> bool {
        match expr {
            Expr::Alias(Alias { expr, .. }) => self.holds_key(expr, schema, keys),
            Expr::Column(column) => index_of(schema, column).is_some_and(|i| keys.contains(&i)),
            Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
                let Ok(from) = expr.get_type(schema) else {
                    return false;
                };
                match key_cast(&from, field.data_type()) {
                    KeyCast::Keeps => self.holds_key(expr, schema, keys),
                    KeyCast::Parses => {
                        let held = self.holds_key(expr, schema, keys);
                        self.parses_key |= held;
                        held
                    }
                    KeyCast::Loses => false,
                }
            }
            _ => false,
        }
    }
}

/// What a cast does to a key's equalities.
#[derive(Debug, PartialEq)]
enum KeyCast {
    /// Equal results come from equal inputs (a widening, a number as text, text as text).
    Keeps,
    /// Text parsed as a BIGINT: `"012"` and `"12"` give one value; buckets made from the
    /// parsed value keep them together.
    Parses,
    /// Different keys can give one value (a narrowing TRY_CAST, a float, a date...).
    Loses,
}

/// Integers and text: the types whose equal values are equal keys, so buckets can be made
/// from them (equal floats, dates or times can be written differently).
pub fn can_key_buckets(data_type: &DataType) -> bool {
    data_type.is_integer() || is_text(data_type)
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn key_cast(from: &DataType, to: &DataType) -> KeyCast {
    let text = is_text;
    if from == to || (text(from) && text(to)) || (from.is_integer() && text(to)) {
        return KeyCast::Keeps;
    }
    if from.is_integer() && to.is_integer() {
        return if integer_range(from).is_some_and(|(lo, hi)| {
            integer_range(to).is_some_and(|(to_lo, to_hi)| to_lo <= lo && hi <= to_hi)
        }) {
            KeyCast::Keeps
        } else {
            KeyCast::Loses
        };
    }
    if text(from) && *to == DataType::Int64 {
        return KeyCast::Parses;
    }
    KeyCast::Loses
}

/// The values an integer type holds.
fn integer_range(data_type: &DataType) -> Option<(i128, i128)> {
    Some(match data_type {
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        DataType::Int64 => (i64::MIN.into(), i64::MAX.into()),
        DataType::UInt8 => (0, u8::MAX.into()),
        DataType::UInt16 => (0, u16::MAX.into()),
        DataType::UInt32 => (0, u32::MAX.into()),
        DataType::UInt64 => (0, u64::MAX.into()),
        _ => return None,
    })
}

fn index_of(schema: &DFSchema, column: &Column) -> Option<usize> {
    schema.index_of_column(column).ok()
}

fn window_function(expr: &Expr) -> Option<&WindowFunction> {
    match expr {
        Expr::Alias(Alias { expr, .. }) => window_function(expr),
        Expr::WindowFunction(function) => Some(function),
        _ => None,
    }
}

/// The line of the first column `expr` reads, when the SQL planner kept where it was.
fn first_line(expr: &Expr) -> Option<u64> {
    let mut line = None;
    expr.apply(|e| {
        if let Expr::Column(Column { spans, .. }) = e {
            line = line_of(spans);
        }
        Ok(if line.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })
    .expect("the closure does not fail");
    line
}

fn line_of(spans: &Spans) -> Option<u64> {
    spans
        .first()
        .map(|span| span.start.line)
        .filter(|line| *line > 0)
}

fn names(exprs: &[Expr]) -> String {
    exprs
        .iter()
        .map(|expr| match expr {
            Expr::Alias(Alias { expr, .. }) => expr.to_string(),
            expr => expr.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `predicate` (over `schema`, whose `keys` columns hold the key) is false or null
/// for a row whose key is null: one of its conjuncts is `key IS NOT NULL` or compares the
/// key (or a cast of it, `TRY_CAST` included) with something.
fn rejects_null_key(predicate: &Expr, schema: &DFSchema, keys: &BTreeSet<usize>) -> bool {
    fn of_key(expr: &Expr, schema: &DFSchema, keys: &BTreeSet<usize>) -> bool {
        match expr {
            Expr::Column(column) => index_of(schema, column).is_some_and(|i| keys.contains(&i)),
            Expr::Cast(Cast { expr, .. })
            | Expr::TryCast(TryCast { expr, .. })
            | Expr::Alias(Alias { expr, .. }) => of_key(expr, schema, keys),
            _ => false,
        }
    }
    datafusion::logical_expr::utils::split_conjunction(predicate)
        .into_iter()
        .any(|conjunct| match conjunct {
            Expr::IsNotNull(expr) => of_key(expr, schema, keys),
            Expr::BinaryExpr(binary)
                if matches!(
                    binary.op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                ) =>
            {
                of_key(&binary.left, schema, keys) || of_key(&binary.right, schema, keys)
            }
            _ => false,
        })
}

fn refusal(
    operator: &'static str,
    reason: String,
    line: Option<u64>,
    keyword: &'static str,
) -> Refusal {
    Refusal {
        operator,
        reason,
        line,
        keyword,
    }
}

fn whole_side_kept(join_type: JoinType, side: &str, line: Option<u64>) -> Refusal {
    refusal(
        "Join",
        format!(
            "a {join_type} join keeps the {side} side's rows, which every bucket reads whole, so unmatched ones would be kept once per bucket"
        ),
        line,
        "JOIN",
    )
}

fn operator_name(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Extension(_) => "Extension",
        LogicalPlan::RecursiveQuery(_) => "RecursiveQuery",
        LogicalPlan::Explain(_) => "Explain",
        LogicalPlan::Analyze(_) => "Analyze",
        LogicalPlan::Statement(_) => "Statement",
        LogicalPlan::Dml(_) => "Dml",
        LogicalPlan::Ddl(_) => "Ddl",
        LogicalPlan::Copy(_) => "Copy",
        LogicalPlan::DescribeTable(_) => "DescribeTable",
        _ => "operator",
    }
}

/// The first line of `sql` holding `keyword` as a word (not in a string or comment), for
/// a refusal whose plan did not keep where it came from.
pub fn keyword_line(sql: &str, keyword: &str) -> Option<u64> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    tokens.iter().find_map(|token| match &token.token {
        Token::Word(word) if word.value.eq_ignore_ascii_case(keyword) => {
            Some(token.span.start.line)
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests;
