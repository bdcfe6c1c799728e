//! `${NAME}` and `${env:NAME}` substitution.
//!
//! Hand-written because the rules are ours: an unknown variable is an error (never an empty
//! string), and environment values are only read where the pipeline asks for them.

use std::collections::{BTreeMap, BTreeSet};

/// Replaces every `${NAME}` with the variable's value and every `${env:NAME}` with the
/// environment variable's value, adding each environment value to `secrets`. Returns a
/// readable message for the first reference that cannot be resolved.
pub fn expand(
    text: &str,
    vars: &BTreeMap<String, String>,
    secrets: &mut BTreeSet<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "unclosed variable reference `{}`",
                &rest[start..].lines().next().unwrap_or_default()
            ));
        };
        let reference = after[..end].trim();
        out.push_str(&lookup(reference, vars, secrets)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(
    reference: &str,
    vars: &BTreeMap<String, String>,
    secrets: &mut BTreeSet<String>,
) -> Result<String, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        let value = std::env::var(name).map_err(|_| {
            format!("environment variable `{name}` (referenced as `${{env:{name}}}`) is not set")
        })?;
        if !value.is_empty() {
            secrets.insert(value.clone());
        }
        return Ok(value);
    }
    vars.get(reference).cloned().ok_or_else(|| {
        let known: Vec<&str> = vars.keys().map(String::as_str).collect();
        if known.is_empty() {
            format!("unknown variable `{reference}`: the pipeline declares no `vars`")
        } else {
            format!(
                "unknown variable `{reference}`; declared variables: {}",
                known.join(", ")
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
        super::expand(text, vars, &mut BTreeSet::new())
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_every_reference() {
        let vars = vars(&[("as_of", "2011-12-10"), ("country", "UK")]);
        assert_eq!(
            expand("WHERE d < DATE '${as_of}' AND c = '${ country }'", &vars).unwrap(),
            "WHERE d < DATE '2011-12-10' AND c = 'UK'"
        );
    }

    #[test]
    fn text_without_references_is_unchanged() {
        assert_eq!(
            expand("SELECT $1, {x}", &vars(&[])).unwrap(),
            "SELECT $1, {x}"
        );
    }

    #[test]
    fn unknown_variable_is_an_error_not_empty() {
        let error = expand("${asof}", &vars(&[("as_of", "x")])).unwrap_err();
        assert_eq!(error, "unknown variable `asof`; declared variables: as_of");
    }

    #[test]
    fn unclosed_reference_is_an_error() {
        assert!(expand("a ${as_of", &vars(&[("as_of", "x")])).is_err());
    }

    #[test]
    fn environment_values_are_collected_as_secrets() {
        // PATH is set wherever tests run.
        let mut secrets = BTreeSet::new();
        let value = super::expand("${env:PATH}", &vars(&[]), &mut secrets).unwrap();
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), [value]);
    }

    #[test]
    fn missing_environment_variable_is_an_error() {
        let error = expand("${env:SEGFLOW_SURELY_UNSET_VARIABLE}", &vars(&[])).unwrap_err();
        assert!(error.contains("SEGFLOW_SURELY_UNSET_VARIABLE"), "{error}");
    }
}
