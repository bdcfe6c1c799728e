//! The pipeline's segment settings in segflow-cluster's own terms, and back: the one place
//! the two crates' types meet. Names (`model.json`'s `kind` and `role`) are the pipeline's,
//! so a setting is spelled the same in the YAML and in the model file.

use segflow_cluster as cluster;
use segflow_pipeline as pipeline;
use segflow_pipeline::Segment;

pub fn kmeans_settings(segment: &Segment) -> cluster::KMeansSettings {
    cluster::KMeansSettings {
        k: segment.k,
        seed: segment.seed,
        restarts: segment.restarts,
        max_iterations: segment.max_iterations,
        tolerance: segment.tolerance,
        fit_sample: segment.fit_sample,
    }
}

/// Each feature's transforms and role, in the order of the segment's features.
pub fn transforms(segment: &Segment) -> Vec<cluster::FeatureTransform> {
    segment
        .transforms
        .iter()
        .map(|transform| cluster::FeatureTransform {
            log1p: transform.log1p,
            winsorize: transform.winsorize,
            role: transform.role.map(role),
        })
        .collect()
}

pub fn k_selection(selection: &pipeline::KSelection) -> cluster::KSelection {
    cluster::KSelection {
        min: selection.min,
        metric: match selection.metric {
            pipeline::KMetric::Silhouette => cluster::KMetric::Silhouette,
            pipeline::KMetric::CalinskiHarabasz => cluster::KMetric::CalinskiHarabasz,
            pipeline::KMetric::DaviesBouldin => cluster::KMetric::DaviesBouldin,
        },
        sample: selection.sample,
    }
}

pub fn scaler(kind: pipeline::ScalerKind) -> cluster::ScalerKind {
    match kind {
        pipeline::ScalerKind::Standard => cluster::ScalerKind::Standard,
        pipeline::ScalerKind::Robust => cluster::ScalerKind::Robust,
        pipeline::ScalerKind::MinMax => cluster::ScalerKind::MinMax,
    }
}

pub fn scaler_name(kind: cluster::ScalerKind) -> &'static str {
    let kind = match kind {
        cluster::ScalerKind::Standard => pipeline::ScalerKind::Standard,
        cluster::ScalerKind::Robust => pipeline::ScalerKind::Robust,
        cluster::ScalerKind::MinMax => pipeline::ScalerKind::MinMax,
    };
    kind.as_str()
}

pub fn scaler_named(name: &str) -> Option<cluster::ScalerKind> {
    pipeline::ScalerKind::parse(name).map(scaler)
}

fn role(role: pipeline::Role) -> cluster::Role {
    match role {
        pipeline::Role::Recency => cluster::Role::Recency,
        pipeline::Role::Frequency => cluster::Role::Frequency,
        pipeline::Role::Monetary => cluster::Role::Monetary,
    }
}

pub fn role_name(role: cluster::Role) -> &'static str {
    let role = match role {
        cluster::Role::Recency => pipeline::Role::Recency,
        cluster::Role::Frequency => pipeline::Role::Frequency,
        cluster::Role::Monetary => pipeline::Role::Monetary,
    };
    role.as_str()
}

pub fn role_named(name: &str) -> Option<cluster::Role> {
    pipeline::Role::parse(name).map(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_both_ways() {
        for kind in pipeline::ScalerKind::ALL {
            assert_eq!(scaler_named(kind.as_str()), Some(scaler(kind)));
            assert_eq!(scaler_name(scaler(kind)), kind.as_str());
        }
        for name in pipeline::Role::ALL.map(pipeline::Role::as_str) {
            assert_eq!(role_named(name).map(role_name), Some(name));
        }
        assert_eq!(scaler_named("zscore"), None);
    }
}
