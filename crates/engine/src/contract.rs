//! Contracts (`contract:` on a step or the segment output): a table's columns against the
//! columns it promises. Names and types are judged on planned schemas by `segflow check`,
//! before any data is read; what plans cannot prove (no nulls, the published schema against
//! the previous run's) is judged on the data, before anything is published.

use std::collections::BTreeMap;

use arrow::datatypes::Schema;
use segflow_pipeline::{Contract, OnDrift, did_you_mean};
use segflow_publish::{AS_OF_COLUMN, ManifestColumn, RUN_ID_COLUMN, WrittenFile, type_name};

/// Where a contract does not hold on `schema`, each with the key to blame: a missing
/// column at its entry, a wrong type at its `type`, an unpromised column at `columns`.
pub fn schema_problems(contract: &Contract, schema: &Schema, table: &str) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for (index, column) in contract.columns.iter().enumerate() {
        let key = format!("{}.columns[{index}]", contract.key);
        match schema.field_with_name(&column.name) {
            Err(_) => problems.push((
                key,
                format!(
                    "`{table}` has no column `{}`{}; its columns: {}",
                    column.name,
                    did_you_mean(&column.name, &names),
                    names.join(", ")
                ),
            )),
            Ok(field) => {
                let found = type_name(field.data_type());
                if !column.data_type.matches(&found) {
                    problems.push((
                        format!("{key}.type"),
                        format!(
                            "column `{}` of `{table}` is {found}, the contract says {}",
                            column.name,
                            column.data_type.as_str()
                        ),
                    ));
                }
            }
        }
    }
    let unpromised: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !contract.columns.iter().any(|column| column.name == *name))
        // Every published table ends in them, whatever its contract says.
        .filter(|name| ![RUN_ID_COLUMN, AS_OF_COLUMN].contains(name))
        .collect();
    if !unpromised.is_empty() {
        problems.push((
            format!("{}.columns", contract.key),
            format!(
                "`{table}` has columns the contract does not list: {} (a contract lists every column, so a reader can rely on all of them)",
                unpromised.join(", ")
            ),
        ));
    }
    problems
}

/// The contract's `nullable: false` columns, for a step to count nulls in as it runs.
pub fn non_null_columns(contract: &Contract) -> Vec<&str> {
    contract
        .columns
        .iter()
        .filter(|column| !column.nullable)
        .map(|column| column.name.as_str())
        .collect()
}

/// The staged files of `table` against its contract: types again (the published schema,
/// not the planned one) and the nulls the files' statistics count in `nullable: false`
/// columns.
pub fn published_problems(contract: &Contract, table: &str, files: &[WrittenFile]) -> Vec<String> {
    let parts: Vec<_> = files
        .iter()
        .filter_map(|file| file.table.as_ref())
        .filter(|part| part.table == table)
        .collect();
    let Some(first) = parts.first() else {
        return Vec::new();
    };
    let mut problems: Vec<String> = schema_problems(contract, &first.schema, table)
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    for column in contract.columns.iter().filter(|column| !column.nullable) {
        let Ok(index) = first.schema.index_of(&column.name) else {
            continue;
        };
        let nulls: Option<u64> = parts
            .iter()
            .map(|part| part.nulls.get(index).copied().flatten())
            .sum();
        match nulls {
            Some(0) => {}
            Some(nulls) => problems.push(format!(
                "column `{}` of `{table}` holds {nulls} nulls; the contract says it holds none",
                column.name
            )),
            None => problems.push(format!(
                "column `{}` of `{table}` has no null count to check `nullable: false` against",
                column.name
            )),
        }
    }
    problems
}

/// How `current` differs from the columns `previous_run` published, where `on_drift` forbids
/// it. `typed`: the earlier manifest names types as this one does (version 2 on); before,
/// only names and nullability are compared.
pub fn drift_problems(
    on_drift: OnDrift,
    table: &str,
    previous: &[ManifestColumn],
    current: &[ManifestColumn],
    previous_run: &str,
    typed: bool,
) -> Vec<String> {
    let now: BTreeMap<&str, &ManifestColumn> =
        current.iter().map(|c| (c.name.as_str(), c)).collect();
    let before: BTreeMap<&str, &ManifestColumn> =
        previous.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut problems = Vec::new();
    for (name, then) in &before {
        match now.get(name) {
            None => problems.push(format!("column `{name}` is gone")),
            Some(column) if typed && column.data_type != then.data_type => problems.push(format!(
                "column `{name}` was {}, is {}",
                then.data_type, column.data_type
            )),
            Some(column) if column.nullable && !then.nullable => {
                problems.push(format!("column `{name}` may now hold nulls"))
            }
            Some(_) => {}
        }
    }
    if on_drift == OnDrift::Fail {
        for name in now.keys().filter(|name| !before.contains_key(*name)) {
            problems.push(format!(
                "column `{name}` is new (on_drift: allow_new_columns accepts new columns)"
            ));
        }
    }
    problems
        .into_iter()
        .map(|problem| format!("`{table}` since run {previous_run}: {problem}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};
    use segflow_pipeline::{ContractColumn, ContractType};

    use super::*;

    fn contract(columns: &[(&str, &str, bool)]) -> Contract {
        Contract {
            columns: columns
                .iter()
                .map(|(name, data_type, nullable)| ContractColumn {
                    name: name.to_string(),
                    data_type: ContractType::parse(data_type).unwrap(),
                    nullable: *nullable,
                })
                .collect(),
            on_drift: None,
            key: "steps[1].contract".into(),
        }
    }

    #[test]
    fn a_schema_keeps_the_contract_or_each_difference_is_named_at_its_key() {
        let schema = Schema::new(vec![
            Field::new("customer_id", DataType::Int64, false),
            Field::new("spend", DataType::Float64, true),
            Field::new("country", DataType::Utf8View, true),
        ]);
        let kept = contract(&[
            ("customer_id", "int64", false),
            ("spend", "float64", true),
            ("country", "string", true),
        ]);
        assert!(schema_problems(&kept, &schema, "features").is_empty());
        let broken = contract(&[("customer_id", "int32", false), ("spends", "float64", true)]);
        let problems = schema_problems(&broken, &schema, "features");
        assert_eq!(
            problems,
            [
                (
                    "steps[1].contract.columns[0].type".to_string(),
                    "column `customer_id` of `features` is int64, the contract says int32"
                        .to_string()
                ),
                (
                    "steps[1].contract.columns[1]".to_string(),
                    "`features` has no column `spends` (did you mean `spend`?); its columns: customer_id, spend, country".to_string()
                ),
                (
                    "steps[1].contract.columns".to_string(),
                    "`features` has columns the contract does not list: spend, country (a contract lists every column, so a reader can rely on all of them)".to_string()
                ),
            ]
        );
    }

    fn column(name: &str, data_type: &str, nullable: bool) -> ManifestColumn {
        ManifestColumn {
            name: name.into(),
            data_type: data_type.into(),
            nullable,
            null_count: None,
        }
    }

    #[test]
    fn drift_is_judged_by_the_rule() {
        let before = [
            column("id", "int64", false),
            column("spend", "float64", true),
        ];
        let added = [
            column("id", "int64", false),
            column("spend", "float64", true),
            column("country", "string", true),
        ];
        assert!(
            drift_problems(
                OnDrift::AllowNewColumns,
                "segments",
                &before,
                &added,
                "d1",
                true
            )
            .is_empty()
        );
        assert_eq!(
            drift_problems(OnDrift::Fail, "segments", &before, &added, "d1", true),
            [
                "`segments` since run d1: column `country` is new (on_drift: allow_new_columns accepts new columns)"
            ]
        );
        let retyped = [column("id", "string", true)];
        assert_eq!(
            drift_problems(
                OnDrift::AllowNewColumns,
                "segments",
                &before,
                &retyped,
                "d1",
                true
            ),
            [
                "`segments` since run d1: column `id` was int64, is string",
                "`segments` since run d1: column `spend` is gone",
            ]
        );
        // An earlier manifest with Arrow's type names: types are not compared.
        let old = [
            column("id", "Int64", false),
            column("spend", "Float64", true),
        ];
        assert!(drift_problems(OnDrift::Fail, "segments", &old, &before, "d0", false).is_empty());
    }
}
