//! `${NAME}` and `${env:NAME}` substitution.
//!
//! Hand-written because the rules are ours: an unknown variable is an error (never an empty
//! string), environment values are only read where the pipeline asks for them, and every
//! value rendered with a secret is recorded with the form that may be shown.

use std::collections::{BTreeMap, BTreeSet};

/// What substituting secrets left in a pipeline's text: each value rendered with one and
/// what may be shown in its place (the secret as `***`), and each secret alone (shown as
/// `***`), for messages that quote a fragment. See [`crate::Masks`].
pub type Rendered = Vec<(String, String)>;

/// Replaces every `${NAME}` with the variable's value and every `${env:NAME}` with the
/// environment variable's value. A value that used a secret (an environment value, or a
/// variable in `secret_vars`) is recorded in `rendered` with its shown form. Returns a
/// readable message for the first reference that cannot be resolved.
pub fn expand(
    text: &str,
    vars: &BTreeMap<String, String>,
    secret_vars: &BTreeSet<String>,
    rendered: &mut Rendered,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut shown = String::with_capacity(text.len());
    let mut used_secret = false;
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        shown.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "unclosed variable reference `{}`",
                &rest[start..].lines().next().unwrap_or_default()
            ));
        };
        let reference = after[..end].trim();
        let value = lookup(reference, vars)?;
        let secret = reference.starts_with("env:") || secret_vars.contains(reference);
        if secret && !value.is_empty() {
            used_secret = true;
            shown.push_str("***");
            rendered.push((value.clone(), "***".to_string()));
        } else {
            shown.push_str(&value);
        }
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    shown.push_str(rest);
    if used_secret {
        rendered.push((out.clone(), shown));
    }
    Ok(out)
}

fn lookup(reference: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return std::env::var(name).map_err(|_| {
            format!("environment variable `{name}` (referenced as `${{env:{name}}}`) is not set")
        });
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
        super::expand(text, vars, &BTreeSet::new(), &mut Vec::new())
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
    fn values_rendered_with_a_secret_are_recorded_with_their_shown_form() {
        // PATH is set wherever tests run.
        let mut rendered = Vec::new();
        let path = std::env::var("PATH").unwrap();
        let value = super::expand(
            "s3://${bucket}/${env:PATH}/${token}",
            &vars(&[("bucket", "lake"), ("token", "t0k3n")]),
            &["token".to_string()].into(),
            &mut rendered,
        )
        .unwrap();
        assert_eq!(value, format!("s3://lake/{path}/t0k3n"));
        assert_eq!(
            rendered,
            [
                (path, "***".to_string()),
                ("t0k3n".to_string(), "***".to_string()),
                (value, "s3://lake/***/***".to_string()),
            ]
        );
        let mut none = Vec::new();
        super::expand(
            "${bucket}",
            &vars(&[("bucket", "lake")]),
            &BTreeSet::new(),
            &mut none,
        )
        .unwrap();
        assert!(none.is_empty(), "nothing secret, nothing recorded");
    }

    #[test]
    fn missing_environment_variable_is_an_error() {
        let error = expand("${env:SEGFLOW_SURELY_UNSET_VARIABLE}", &vars(&[])).unwrap_err();
        assert!(error.contains("SEGFLOW_SURELY_UNSET_VARIABLE"), "{error}");
    }
}
