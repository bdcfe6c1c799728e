//! `contract:` on a step or the segment output: the columns a table promises its readers,
//! with types in the stable names the manifest records (`int64`, `decimal(12,2)`,
//! `timestamp(us, UTC)`), and, for the published segments, what may change between runs.

/// A table's promised columns: exactly these (in any order), of these types.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    pub columns: Vec<ContractColumn>,
    /// Segment output only: how its published schema may differ from the previous run's.
    pub on_drift: Option<OnDrift>,
    /// Where it is declared, e.g. `steps[2].contract`.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContractColumn {
    pub name: String,
    pub data_type: ContractType,
    /// `false`: no row may hold a null (checked on the data, as plans cannot prove it).
    pub nullable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDrift {
    /// Any change to the columns since the previous run fails the run.
    Fail,
    /// Columns may be added; a column removed, retyped or made nullable fails the run.
    AllowNewColumns,
}

impl OnDrift {
    pub(crate) const WORDS: [&'static str; 2] = ["fail", "allow_new_columns"];

    pub(crate) fn parse(text: &str) -> Option<OnDrift> {
        match text {
            "fail" => Some(OnDrift::Fail),
            "allow_new_columns" => Some(OnDrift::AllowNewColumns),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnDrift::Fail => Self::WORDS[0],
            OnDrift::AllowNewColumns => Self::WORDS[1],
        }
    }
}

/// A column type as written in a contract, in the manifest's stable names. `timestamp`
/// alone accepts any unit and zone; every other name is matched exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractType {
    /// Lower case (a zone keeps its case), without spaces: how it is compared.
    canonical: String,
    written: String,
}

/// Names that stand alone; `decimal(p,s)`, `timestamp(unit[, zone])` and the nested
/// `list<…>`, `struct<…>`, `map<…>` take parameters.
const SIMPLE_TYPES: &[&str] = &[
    "boolean",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "string",
    "binary",
    "date",
    "date64",
    "timestamp",
    "null",
];

impl ContractType {
    pub fn parse(text: &str) -> Result<ContractType, String> {
        let written = text.trim().to_string();
        let squeezed: String = written.chars().filter(|c| !c.is_whitespace()).collect();
        let (head, rest) = match squeezed.find(['(', '<']) {
            Some(at) => squeezed.split_at(at),
            None => (squeezed.as_str(), ""),
        };
        let head = head.to_ascii_lowercase();
        let unknown = || {
            format!(
                "`{written}` is not a column type: use {}, decimal(p,s), timestamp(unit[, zone]) with unit s, ms, us or ns, or list<…>, struct<…>, map<…>",
                SIMPLE_TYPES.join(", ")
            )
        };
        let canonical = match (head.as_str(), rest) {
            (simple, "") if SIMPLE_TYPES.contains(&simple) => simple.to_string(),
            ("decimal", rest) => {
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(unknown)?;
                let (precision, scale) = inner.split_once(',').ok_or_else(unknown)?;
                let (precision, scale): (u8, i8) = (
                    precision.parse().map_err(|_| unknown())?,
                    scale.parse().map_err(|_| unknown())?,
                );
                if !(1..=76).contains(&precision) || i16::from(scale) > i16::from(precision) {
                    return Err(format!(
                        "`{written}`: a decimal's precision is 1 to 76 and its scale at most the precision"
                    ));
                }
                format!("decimal({precision},{scale})")
            }
            ("timestamp", rest) => {
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(unknown)?;
                let (unit, zone) = match inner.split_once(',') {
                    Some((unit, zone)) if !zone.is_empty() => (unit, Some(zone)),
                    Some(_) => return Err(unknown()),
                    None => (inner, None),
                };
                let unit = unit.to_ascii_lowercase();
                if !["s", "ms", "us", "ns"].contains(&unit.as_str()) {
                    return Err(unknown());
                }
                match zone {
                    Some(zone) => format!("timestamp({unit},{zone})"),
                    None => format!("timestamp({unit})"),
                }
            }
            ("list" | "struct" | "map", rest) if rest.starts_with('<') && rest.ends_with('>') => {
                format!("{head}{}", rest.to_ascii_lowercase())
            }
            _ => return Err(unknown()),
        };
        Ok(ContractType { canonical, written })
    }

    /// Whether a column whose type the manifest names `stable` keeps the contract.
    pub fn matches(&self, stable: &str) -> bool {
        let stable: String = stable.chars().filter(|c| !c.is_whitespace()).collect();
        if self.canonical == "timestamp" {
            return stable == "timestamp" || stable.starts_with("timestamp(");
        }
        // A zone keeps its case (`UTC`); everything else compares in lower case.
        match self.canonical.strip_prefix("timestamp(") {
            Some(_) => self.canonical == stable,
            None => self.canonical == stable.to_ascii_lowercase(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_in_the_manifests_names_and_match_them() {
        let int = ContractType::parse("Int64").unwrap();
        assert!(int.matches("int64") && !int.matches("int32"));
        let money = ContractType::parse("decimal(12, 2)").unwrap();
        assert!(money.matches("decimal(12,2)") && !money.matches("decimal(12,3)"));
        let any_time = ContractType::parse("timestamp").unwrap();
        assert!(any_time.matches("timestamp(us)") && any_time.matches("timestamp(ns, UTC)"));
        let micros = ContractType::parse("timestamp(us, UTC)").unwrap();
        assert!(micros.matches("timestamp(us, UTC)") && !micros.matches("timestamp(us)"));
        let list = ContractType::parse("list<int64>").unwrap();
        assert!(list.matches("list<int64>"));
    }

    #[test]
    fn mistakes_are_refused_with_the_forms_that_work() {
        for bad in [
            "integer",
            "decimal",
            "decimal(0,0)",
            "decimal(5,6)",
            "timestamp(hours)",
            "timestamp(us,)",
            "list",
        ] {
            assert!(ContractType::parse(bad).is_err(), "{bad}");
        }
        assert!(
            ContractType::parse("varchar")
                .unwrap_err()
                .contains("int64, ")
        );
    }
}
