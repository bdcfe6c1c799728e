//! What to do with a segment, by its name: the default suggestions for the names segflow
//! gives from RFM roles, which a pipeline overrides or extends under `segment.actions`
//! (documented in docs/pipeline.md, "Suggested actions").

use std::collections::BTreeMap;

/// The suggestion for each name the RFM naming rule gives (segflow-cluster's `naming.rs`).
pub const DEFAULT_ACTIONS: [(&str, &str); 7] = [
    (
        "Champions",
        "Reward them: early access, loyalty perks and referral offers; they need no discount.",
    ),
    (
        "Loyal",
        "Upsell higher-value products, ask for reviews, keep them in the loyalty programme.",
    ),
    (
        "Potential loyalists",
        "Offer a membership or loyalty programme and recommend products related to what they bought.",
    ),
    (
        "New",
        "Onboard them: a welcome series and an incentive for the second purchase.",
    ),
    (
        "At risk",
        "Win them back before they lapse: personal outreach, renewal offers, what is new since their last order.",
    ),
    (
        "Hibernating",
        "Re-engage at low cost with relevant offers and reminders; test what brings them back.",
    ),
    (
        "Lost",
        "Try one strong win-back offer, then stop spending on them; ask why they left.",
    ),
];

/// The action for the segment `name`: the pipeline's, else the default for the name (a
/// name made unique with a count, `Lost (2)`, reads as `Lost`), else none.
pub fn action_for<'a>(name: &str, overrides: &'a BTreeMap<String, String>) -> Option<&'a str>
where
    'static: 'a,
{
    if let Some(action) = overrides.get(name) {
        return Some(action);
    }
    let base = match name.rsplit_once(" (") {
        Some((base, count)) if count.trim_end_matches(')').parse::<u32>().is_ok() => base,
        _ => name,
    };
    if let Some(action) = overrides.get(base) {
        return Some(action);
    }
    DEFAULT_ACTIONS
        .iter()
        .find(|(default, _)| *default == base)
        .map(|(_, action)| *action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_actions_come_before_the_defaults() {
        let overrides = BTreeMap::from([("Lost".to_string(), "Let go.".to_string())]);
        assert_eq!(action_for("Lost", &overrides), Some("Let go."));
        assert_eq!(action_for("Lost (2)", &overrides), Some("Let go."));
        assert!(
            action_for("Champions", &overrides)
                .unwrap()
                .starts_with("Reward")
        );
        assert!(
            action_for("At risk (3)", &BTreeMap::new())
                .unwrap()
                .starts_with("Win")
        );
        assert_eq!(action_for("segment 4", &overrides), None);
    }

    #[test]
    fn the_defaults_are_the_ones_documented() {
        let docs = include_str!("../../../docs/pipeline.md");
        for (name, action) in DEFAULT_ACTIONS {
            assert!(docs.contains(&format!("| {name} | {action} |")), "{name}");
        }
    }
}
