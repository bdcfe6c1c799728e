use crate::ScalerKind;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// Scaling per feature as `(x - center) / scale`, kept with the centroids so values can be
/// mapped to model units and back. Every kind fits that form:
/// - standard: mean and population standard deviation, as scikit-learn's StandardScaler;
/// - robust: median and interquartile range (25th to 75th percentile), as RobustScaler;
/// - minmax: minimum and range, as MinMaxScaler.
///
/// A feature without spread keeps scale 1, so it does not divide by zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    pub kind: ScalerKind,
    pub centers: Array1<f64>,
    pub scales: Array1<f64>,
}

impl Scaler {
    pub fn fit(data: ArrayView2<f64>, kind: ScalerKind) -> Scaler {
        let columns = data.axis_iter(Axis(1));
        let (centers, scales): (Vec<f64>, Vec<f64>) = columns
            .map(|column| match kind {
                ScalerKind::Standard => (column.mean().unwrap_or(0.0), column.std(0.0)),
                ScalerKind::Robust => {
                    let sorted = sorted(column);
                    (
                        percentile(&sorted, 0.5),
                        percentile(&sorted, 0.75) - percentile(&sorted, 0.25),
                    )
                }
                ScalerKind::MinMax => {
                    let min = column.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = column.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (min, max - min)
                }
            })
            .map(|(center, scale)| {
                let center = if center.is_finite() { center } else { 0.0 };
                let scale = if scale > 0.0 && scale.is_finite() {
                    scale
                } else {
                    1.0
                };
                (center, scale)
            })
            .unzip();
        Scaler {
            kind,
            centers: Array1::from(centers),
            scales: Array1::from(scales),
        }
    }

    pub fn transform(&self, data: ArrayView2<f64>) -> Array2<f64> {
        (&data - &self.centers) / &self.scales
    }

    pub fn inverse(&self, scaled: ArrayView2<f64>) -> Array2<f64> {
        &scaled * &self.scales + &self.centers
    }
}

pub(crate) fn sorted(values: ArrayView1<f64>) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

/// The `p` quantile (0 to 1) of sorted values, interpolating linearly between the two
/// nearest ranks (numpy's default), so results match the Python tools.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let position = p.clamp(0.0, 1.0) * (n - 1) as f64;
            let below = position.floor() as usize;
            let above = (below + 1).min(n - 1);
            let fraction = position - below as f64;
            sorted[below] + (sorted[above] - sorted[below]) * fraction
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn standard_scaling_uses_mean_and_population_deviation_and_inverts() {
        let data = array![[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]];
        let scaler = Scaler::fit(data.view(), ScalerKind::Standard);
        assert_eq!(scaler.centers, array![3.0, 5.0]);
        // population std of 1, 3, 5 is sqrt(8/3); the constant column keeps scale 1
        assert!((scaler.scales[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(scaler.scales[1], 1.0);
        let scaled = scaler.transform(data.view());
        assert!((scaled[(0, 0)] + (1.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(scaled.column(1), array![0.0, 0.0, 0.0]);
        let back = scaler.inverse(scaled.view());
        assert!((back - data).iter().all(|d| d.abs() < 1e-12));
    }

    #[test]
    fn robust_scaling_uses_median_and_interquartile_range() {
        // numpy: median 3, percentiles 25 and 75 of [1, 2, 3, 4, 100] are 2 and 4.
        let data = array![[1.0], [2.0], [3.0], [4.0], [100.0]];
        let scaler = Scaler::fit(data.view(), ScalerKind::Robust);
        assert_eq!(scaler.centers, array![3.0]);
        assert_eq!(scaler.scales, array![2.0]);
        assert_eq!(
            scaler.transform(data.view()).column(0),
            array![-1.0, -0.5, 0.0, 0.5, 48.5]
        );
    }

    #[test]
    fn minmax_scaling_maps_to_zero_one() {
        let data = array![[2.0], [4.0], [10.0]];
        let scaler = Scaler::fit(data.view(), ScalerKind::MinMax);
        assert_eq!(
            scaler.transform(data.view()).column(0),
            array![0.0, 0.25, 1.0]
        );
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [10, 50, 90]) == [1.3, 2.5, 3.7]
        let values = [1.0, 2.0, 3.0, 4.0];
        for (p, expected) in [(0.1, 1.3), (0.5, 2.5), (0.9, 3.7)] {
            assert!((percentile(&values, p) - expected).abs() < 1e-12);
        }
    }
}
