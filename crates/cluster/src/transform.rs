//! What happens to the raw feature values before k-means sees them, fitted on the data and
//! kept with the model: clip to percentiles (winsorize), `ln(1 + x)`, then scale.
//!
//! Clipping comes first, on raw values, so the percentiles are in the units people read;
//! the logarithm then tames the skew of counts and amounts; the scaler last, so every
//! feature weighs the same in the distance.

use crate::{FeatureTransform, ScalerKind};
use ndarray::{Array2, ArrayView2, Axis};

use crate::scaler::{Scaler, percentile, sorted};
use crate::{ClusterError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessor {
    pub transforms: Vec<FeatureTransform>,
    /// Per feature, the raw values clipped to (from winsorize percentiles).
    pub clips: Vec<Option<(f64, f64)>>,
    pub scaler: Scaler,
}

impl Preprocessor {
    /// Fits clips and scaler on `raw` (rows x features, every value finite).
    pub fn fit(
        raw: ArrayView2<f64>,
        features: &[String],
        transforms: &[FeatureTransform],
        scaler: ScalerKind,
    ) -> Result<Preprocessor> {
        let clips: Vec<Option<(f64, f64)>> = raw
            .axis_iter(Axis(1))
            .zip(transforms)
            .map(|(column, transform)| {
                transform.winsorize.map(|(low, high)| {
                    let sorted = sorted(column);
                    (percentile(&sorted, low), percentile(&sorted, high))
                })
            })
            .collect();
        let mut partial = Preprocessor {
            transforms: transforms.to_vec(),
            clips,
            scaler: Scaler::fit(raw, ScalerKind::Standard),
        };
        let transformed = partial.before_scaling(raw, features)?;
        partial.scaler = Scaler::fit(transformed.view(), scaler);
        Ok(partial)
    }

    /// Raw values to model units.
    pub fn transform(&self, raw: ArrayView2<f64>, features: &[String]) -> Result<Array2<f64>> {
        let transformed = self.before_scaling(raw, features)?;
        Ok(self.scaler.transform(transformed.view()))
    }

    /// Model units back to raw units (clipping cannot be undone: values stay within it).
    pub fn inverse(&self, scaled: ArrayView2<f64>) -> Array2<f64> {
        let mut raw = self.scaler.inverse(scaled);
        for (mut column, transform) in raw.axis_iter_mut(Axis(1)).zip(&self.transforms) {
            if transform.log1p {
                column.mapv_inplace(f64::exp_m1);
            }
        }
        raw
    }

    fn before_scaling(&self, raw: ArrayView2<f64>, features: &[String]) -> Result<Array2<f64>> {
        let mut out = raw.to_owned();
        for (j, mut column) in out.axis_iter_mut(Axis(1)).enumerate() {
            if let Some((low, high)) = self.clips[j] {
                column.mapv_inplace(|x| x.clamp(low, high));
            }
            if self.transforms[j].log1p {
                let invalid = column.iter().filter(|x| **x <= -1.0).count();
                if invalid > 0 {
                    return Err(ClusterError::LogOfNonPositive {
                        column: features[j].clone(),
                        count: invalid,
                    });
                }
                column.mapv_inplace(f64::ln_1p);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    fn names() -> Vec<String> {
        vec!["spend".to_string()]
    }

    #[test]
    fn winsorize_clips_at_percentiles_then_log_then_scale() {
        // Percentiles 0.25 and 0.75 of [0, 1, 3, 7, 1000] (numpy, linear) are 1 and 7.
        let raw = array![[0.0], [1.0], [3.0], [7.0], [1000.0]];
        let transform = FeatureTransform {
            log1p: true,
            winsorize: Some((0.25, 0.75)),
            role: None,
        };
        let model =
            Preprocessor::fit(raw.view(), &names(), &[transform], ScalerKind::MinMax).unwrap();
        assert_eq!(model.clips, [Some((1.0, 7.0))]);
        // Clipped to [1, 1, 3, 7, 7], log1p gives ln 2, ln 2, ln 4, ln 8, ln 8, min-max scaled.
        let scaled = model.transform(raw.view(), &names()).unwrap();
        // ln(1 + 3) = ln 4 is halfway from ln 2 to ln 8 on a log scale.
        let expected = [0.0, 0.0, 0.5, 1.0, 1.0];
        for (got, want) in scaled.column(0).iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
        let back = model.inverse(scaled.view());
        assert!((back[(2, 0)] - 3.0).abs() < 1e-9, "log1p is undone");
    }

    #[test]
    fn log1p_refuses_values_at_or_below_minus_one() {
        let raw = array![[-1.0], [2.0], [-3.0]];
        let transform = FeatureTransform {
            log1p: true,
            ..FeatureTransform::default()
        };
        let error = Preprocessor::fit(raw.view(), &names(), &[transform], ScalerKind::Standard)
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "feature `spend`: log1p needs values above -1, and 2 are not (clip them with `winsorize`, or drop the transform)"
        );
    }
}
