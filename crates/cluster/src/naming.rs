//! Names a marketer can act on, from where each segment's centroid sits on recency,
//! frequency and monetary value.
//!
//! The rule: on each role a segment is *high* when its centroid is better than the
//! customer-weighted mean of all centroids on that feature, in model units (recency is days
//! since the last purchase, so fewer is better; more is better for frequency and monetary).
//! Then:
//!
//! | recent | frequent | spends | name |
//! |---|---|---|---|
//! | high | high | high | Champions |
//! | high | high | low | Loyal |
//! | high | low | high | Potential loyalists |
//! | high | low | low | New |
//! | low | high | high | At risk |
//! | low | high or spends high, not both | | Hibernating |
//! | low | low | low | Lost |
//!
//! When two segments get one name, the stronger keeps it among recent segments (strength:
//! how far the centroid is on the good side, summed over the three roles) and the weaker
//! among the others, and the rest take the next name of its ladder: Champions, Loyal,
//! Potential loyalists; New, Potential loyalists; At risk, Hibernating; Hibernating, At
//! risk, Lost; Lost, Hibernating. A name still taken gets a number: `Lost (2)`.
//!
//! Without all three roles a segment is named `segment <id>`. The pipeline's `names`
//! override any of it.

use std::collections::BTreeMap;

use crate::Role;

use crate::Segmentation;

pub fn segment_names(
    segmentation: &Segmentation,
    overrides: &BTreeMap<u32, String>,
) -> Vec<String> {
    let k = segmentation.centroids.nrows();
    let role_column = |role: Role| {
        segmentation
            .preprocess
            .transforms
            .iter()
            .position(|t| t.role == Some(role))
    };
    let roles = (
        role_column(Role::Recency),
        role_column(Role::Frequency),
        role_column(Role::Monetary),
    );
    let total: u64 = segmentation.sizes.iter().sum();
    let weighted_mean = |j: usize| {
        (0..k)
            .map(|c| segmentation.centroids[(c, j)] * segmentation.sizes[c] as f64)
            .sum::<f64>()
            / total.max(1) as f64
    };
    let Some((r, f, m)) = (match roles {
        (Some(r), Some(f), Some(m)) => Some((r, f, m)),
        _ => None,
    }) else {
        let mut names: Vec<String> = segmentation
            .ids
            .iter()
            .map(|id| format!("segment {id}"))
            .collect();
        apply(&mut names, &segmentation.ids, overrides);
        return names;
    };
    let (mean_r, mean_f, mean_m) = (weighted_mean(r), weighted_mean(f), weighted_mean(m));
    // Signed distance to the mean on the good side of each role.
    let good = |c: usize| {
        (
            mean_r - segmentation.centroids[(c, r)],
            segmentation.centroids[(c, f)] - mean_f,
            segmentation.centroids[(c, m)] - mean_m,
        )
    };
    let strength = |c: usize| {
        let (r, f, m) = good(c);
        r + f + m
    };
    let mut order: Vec<usize> = (0..k).collect();
    // Recent segments first, strongest first; then the others, weakest first.
    order.sort_by(|&a, &b| {
        let (recent_a, recent_b) = (good(a).0 > 0.0, good(b).0 > 0.0);
        recent_b.cmp(&recent_a).then_with(|| {
            if recent_a {
                strength(b).total_cmp(&strength(a))
            } else {
                strength(a).total_cmp(&strength(b))
            }
        })
    });
    let mut names = vec![String::new(); k];
    let mut taken: BTreeMap<&'static str, usize> = BTreeMap::new();
    for c in order {
        let (r, f, m) = good(c);
        let ladder = ladder(rfm_name(r > 0.0, f > 0.0, m > 0.0));
        let name = ladder
            .iter()
            .find(|name| !taken.contains_key(*name))
            .copied()
            .unwrap_or(ladder[0]);
        let count = taken.entry(name).or_insert(0);
        *count += 1;
        names[c] = if *count == 1 {
            name.to_string()
        } else {
            format!("{name} ({count})")
        };
    }
    apply(&mut names, &segmentation.ids, overrides);
    names
}

fn apply(names: &mut [String], ids: &[u32], overrides: &BTreeMap<u32, String>) {
    for (name, id) in names.iter_mut().zip(ids) {
        if let Some(given) = overrides.get(id) {
            *name = given.clone();
        }
    }
}

/// The name, then the names a weaker segment of the same kind takes instead.
fn ladder(name: &'static str) -> &'static [&'static str] {
    match name {
        "Champions" => &["Champions", "Loyal", "Potential loyalists"],
        "Loyal" => &["Loyal", "Potential loyalists"],
        "Potential loyalists" => &["Potential loyalists", "New"],
        "New" => &["New", "Potential loyalists"],
        "At risk" => &["At risk", "Hibernating"],
        "Hibernating" => &["Hibernating", "At risk", "Lost"],
        _ => &["Lost", "Hibernating"],
    }
}

fn rfm_name(recent: bool, frequent: bool, spends: bool) -> &'static str {
    match (recent, frequent, spends) {
        (true, true, true) => "Champions",
        (true, true, false) => "Loyal",
        (true, false, true) => "Potential loyalists",
        (true, false, false) => "New",
        (false, true, true) => "At risk",
        (false, true, false) | (false, false, true) => "Hibernating",
        (false, false, false) => "Lost",
    }
}

#[cfg(test)]
mod tests {
    use crate::{FeatureTransform, ScalerKind};
    use ndarray::array;

    use super::*;
    use crate::{Preprocessor, Scaler};

    fn segmentation(
        roles: [Option<Role>; 3],
        centroids: ndarray::Array2<f64>,
        sizes: Vec<u64>,
    ) -> Segmentation {
        let transforms = roles
            .iter()
            .map(|role| FeatureTransform {
                role: *role,
                ..FeatureTransform::default()
            })
            .collect();
        Segmentation {
            features: vec!["r".into(), "f".into(), "m".into()],
            preprocess: Preprocessor {
                transforms,
                clips: vec![None; 3],
                scaler: Scaler::fit(
                    ndarray::Array2::<f64>::zeros((1, 3)).view(),
                    ScalerKind::Standard,
                ),
            },
            ids: (0..centroids.nrows() as u32).collect(),
            centroids,
            assignments: Vec::new(),
            distances: Vec::new(),
            sizes,
            inertia: 0.0,
            iterations: 0,
            converged: true,
        }
    }

    #[test]
    fn centroids_are_named_by_their_side_of_the_mean_on_each_role() {
        let roles = [
            Some(Role::Recency),
            Some(Role::Frequency),
            Some(Role::Monetary),
        ];
        // Equal sizes: the means are 0 on every feature.
        let centroids = array![
            [-1.0, 1.0, 1.0],   // recent, frequent, spends
            [-1.0, -1.0, -1.0], // recent only
            [1.0, 1.0, 1.0],    // was frequent and spent, not recently
            [1.0, -1.0, -1.0],  // none
            [2.0, -2.0, -2.0],  // none, further away
        ];
        let names = segment_names(
            &segmentation(roles, centroids, vec![1; 5]),
            &BTreeMap::new(),
        );
        // The two lapsed segments without value: the weaker keeps Lost, the other is Hibernating.
        assert_eq!(
            names,
            ["Champions", "New", "At risk", "Hibernating", "Lost"]
        );
    }

    #[test]
    fn overrides_win_and_missing_roles_give_plain_names() {
        let roles = [Some(Role::Recency), None, Some(Role::Monetary)];
        let centroids = array![[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]];
        let overrides = BTreeMap::from([(1, "VIP".to_string())]);
        let names = segment_names(&segmentation(roles, centroids, vec![1, 1]), &overrides);
        assert_eq!(names, ["segment 0", "VIP"]);
    }
}
