//! The segment stage's settings, as the engine reads them: input, key, features with their
//! transforms and roles, k or a range of k, scaler, warm start, and sampling.

use std::collections::BTreeMap;

use crate::Location;

#[derive(Debug, Clone)]
pub struct Segment {
    pub input: String,
    /// The columns of the published `segments` table.
    pub contract: Option<crate::Contract>,
    pub key: String,
    pub features: Vec<String>,
    /// Each feature's transforms and role, in the order of `features`.
    pub transforms: Vec<FeatureTransform>,
    pub scaler: ScalerKind,
    /// Names replacing the generated ones, by segment id.
    pub names: BTreeMap<u32, String>,
    /// Suggested actions by segment name, for the report (over its defaults).
    pub actions: BTreeMap<String, String>,
    /// What a feature's values are counted in, by feature, for the report.
    pub units: BTreeMap<String, String>,
    pub carry: Vec<String>,
    /// The number of segments; with `k_selection`, the largest k tried.
    pub k: usize,
    /// Set when k is chosen from a range.
    pub k_selection: Option<KSelection>,
    /// Fit from an earlier run's model and keep its segment ids; with `fixed_model`, the
    /// model that assigns the customers as it is (`segment.model`).
    pub warm_start: Option<WarmStart>,
    /// Assign with the earlier model without fitting: transforms, scaler, centroids, ids
    /// and names as it has them.
    pub fixed_model: bool,
    /// Customers with a null, NaN or infinite feature are set aside instead of failing the run.
    pub quarantine_invalid: bool,
    /// Fit on a seeded sample of this many customers, then assign everyone.
    pub fit_sample: Option<usize>,
    pub seed: u64,
    pub restarts: usize,
    pub max_iterations: usize,
    pub tolerance: f64,
    /// Checks of the fitted segments, judged before publishing.
    pub checks: Vec<SegmentCheck>,
}

/// A check of the fitted segments (`segment.checks`).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentCheck {
    pub name: String,
    pub kind: SegmentCheckKind,
    /// `Error` fails the run before publishing; `Warn` is reported. (`Quarantine` is refused:
    /// a segment is not a row to set aside.)
    pub severity: crate::Severity,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SegmentCheckKind {
    /// Every segment holds at least this share of the customers.
    MinShare(f64),
    /// No segment holds more than this share of the customers.
    MaxShare(f64),
    /// At most this share of the customers segmented in the previous run too changed
    /// segment (needs a warm start from a run, which keeps segment ids).
    MaxMovedShare(f64),
    /// No segment's centroid moved further than this from the previous run's centroid of
    /// the same id, in model (scaled) units (needs a warm start).
    MaxCentroidShift(f64),
    /// The population stability index of the segment shares against the previous run's is
    /// at most this (needs a warm start).
    MaxSizePsi(f64),
}

impl SegmentCheckKind {
    pub(crate) const WORDS: [&'static str; 5] = [
        "min_share",
        "max_share",
        "max_moved_share",
        "max_centroid_shift",
        "max_size_psi",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SegmentCheckKind::MinShare(_) => Self::WORDS[0],
            SegmentCheckKind::MaxShare(_) => Self::WORDS[1],
            SegmentCheckKind::MaxMovedShare(_) => Self::WORDS[2],
            SegmentCheckKind::MaxCentroidShift(_) => Self::WORDS[3],
            SegmentCheckKind::MaxSizePsi(_) => Self::WORDS[4],
        }
    }

    /// Whether the check compares with the run the warm start read.
    pub fn needs_previous(self) -> bool {
        !matches!(
            self,
            SegmentCheckKind::MinShare(_) | SegmentCheckKind::MaxShare(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WarmStart {
    /// The published run just before this one in run order (the greatest smaller run id).
    Previous,
    /// The published run with this id.
    Run(String),
    /// A `model.json` (segment ids are matched; without the run's segments there is no
    /// migration to count).
    Model(Location),
}

/// Try every k from `min` to the segment's `k` and keep the best by `metric`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KSelection {
    pub min: usize,
    pub metric: KMetric,
    /// Customers the silhouette is computed on.
    pub sample: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KMetric {
    /// Mean silhouette coefficient: higher is better.
    Silhouette,
    /// Between- to within-cluster dispersion: higher is better.
    CalinskiHarabasz,
    /// Mean similarity of each cluster to its closest one: lower is better.
    DaviesBouldin,
}

impl KMetric {
    pub const ALL: [KMetric; 3] = [
        KMetric::Silhouette,
        KMetric::CalinskiHarabasz,
        KMetric::DaviesBouldin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KMetric::Silhouette => "silhouette",
            KMetric::CalinskiHarabasz => "calinski_harabasz",
            KMetric::DaviesBouldin => "davies_bouldin",
        }
    }

    pub fn parse(text: &str) -> Option<KMetric> {
        KMetric::ALL
            .into_iter()
            .find(|metric| metric.as_str() == text)
    }
}

/// What is done to a feature before scaling: clipped to percentiles, then `ln(1 + x)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FeatureTransform {
    pub log1p: bool,
    /// Low and high percentiles (0 to 1).
    pub winsorize: Option<(f64, f64)>,
    pub role: Option<Role>,
}

/// What a feature means to the business, for naming segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Days since the last purchase: fewer is better.
    Recency,
    Frequency,
    Monetary,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Recency, Role::Frequency, Role::Monetary];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Recency => "recency",
            Role::Frequency => "frequency",
            Role::Monetary => "monetary",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ScalerKind {
    /// Mean 0, population standard deviation 1 (scikit-learn's StandardScaler).
    #[default]
    Standard,
    /// Median 0, interquartile range 1 (RobustScaler): outliers do not set the scale.
    Robust,
    /// Minimum 0, maximum 1 (MinMaxScaler).
    MinMax,
}

impl ScalerKind {
    pub const ALL: [ScalerKind; 3] = [ScalerKind::Standard, ScalerKind::Robust, ScalerKind::MinMax];

    pub fn as_str(self) -> &'static str {
        match self {
            ScalerKind::Standard => "standard",
            ScalerKind::Robust => "robust",
            ScalerKind::MinMax => "minmax",
        }
    }

    pub fn parse(text: &str) -> Option<ScalerKind> {
        ScalerKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}
