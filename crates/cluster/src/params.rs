//! What the caller says about the features and the fit, in this crate's own terms: the
//! pipeline's configuration is mapped to these by the engine, so clustering does not
//! change when the YAML does.

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

/// How features are put on one scale before k-means.
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

/// Try every k from `min` to the fit's `k` and keep the best by `metric`.
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
