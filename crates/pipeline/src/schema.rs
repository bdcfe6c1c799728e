//! The JSON Schema of a pipeline file, derived from the raw serde types (so it cannot
//! drift from what the parser accepts in shape), with the closed sets of words the
//! resolver accepts added where a field is free text to serde.

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::raw::RawPipeline;

/// The schema, draft 2020-12, as editors (the VS Code YAML extension) read it.
pub fn json_schema() -> Value {
    let generator = SchemaGenerator::new(SchemaSettings::draft2020_12());
    let schema = generator.into_root_schema_for::<RawPipeline>();
    let mut value = schema.to_value();
    if let Value::Object(root) = &mut value {
        root.insert("title".into(), json!("segflow pipeline"));
        root.insert(
            "$id".into(),
            json!("https://example.invalid/segflow/pipeline.schema.json"),
        );
    }
    for (definition, property, words) in closed_words() {
        if let Some(field) =
            value.pointer_mut(&format!("/$defs/{definition}/properties/{property}"))
        {
            restrict(field, &words);
        }
    }
    value
}

/// Fields serde reads as text but the resolver accepts only some words for.
fn closed_words() -> Vec<(&'static str, &'static str, Vec<&'static str>)> {
    vec![
        ("RawStep", "kind", crate::StepKind::WORDS.to_vec()),
        ("RawSource", "format", crate::Format::WORDS.to_vec()),
        ("RawSource", "on_error", crate::OnError::WORDS.to_vec()),
        ("RawCheck", "type", crate::resolve::CHECK_TYPES.to_vec()),
        ("RawCheck", "severity", crate::Severity::WORDS.to_vec()),
        ("RawCheck", "metric", crate::checks::Metric::WORDS.to_vec()),
        ("RawContract", "on_drift", crate::OnDrift::WORDS.to_vec()),
        (
            "RawSegmentCheck",
            "type",
            crate::SegmentCheckKind::WORDS.to_vec(),
        ),
        ("RawSegmentCheck", "severity", vec!["error", "warn"]),
        ("RawValue", "time_unit", crate::TimeUnit::WORDS.to_vec()),
        (
            "RawValue",
            "purchase_model",
            crate::PurchaseModelKind::WORDS.to_vec(),
        ),
        (
            "RawValue",
            "spend_model",
            crate::SpendModelKind::WORDS.to_vec(),
        ),
        ("RawValue", "on_invalid", vec!["fail", "quarantine"]),
    ]
}

/// `field` (a string, or a string or null) limited to `words`.
fn restrict(field: &mut Value, words: &[&str]) {
    let Value::Object(field) = field else { return };
    let nullable =
        matches!(field.get("type"), Some(Value::Array(types)) if types.contains(&json!("null")));
    let mut allowed: Vec<Value> = words.iter().map(|word| json!(word)).collect();
    if nullable {
        allowed.push(Value::Null);
    }
    field.insert("enum".into(), Value::Array(allowed));
}
