use ndarray::{Array1, Array2, ArrayView2, Axis};

/// z-score scaling, kept with the centroids so raw values can be mapped to model units and
/// back. Uses the population standard deviation, as scikit-learn's `StandardScaler`; a
/// constant feature keeps scale 1 so it does not divide by zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    pub means: Array1<f64>,
    pub scales: Array1<f64>,
}

impl Scaler {
    pub fn fit(data: ArrayView2<f64>) -> Scaler {
        let means = data
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(data.ncols()));
        let scales = data
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 0.0 && s.is_finite() { s } else { 1.0 });
        Scaler { means, scales }
    }

    pub fn transform(&self, data: ArrayView2<f64>) -> Array2<f64> {
        (&data - &self.means) / &self.scales
    }

    pub fn inverse(&self, scaled: ArrayView2<f64>) -> Array2<f64> {
        &scaled * &self.scales + &self.means
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    #[test]
    fn standardises_each_column_and_inverts() {
        let data = array![[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]];
        let scaler = Scaler::fit(data.view());
        assert_eq!(scaler.means, array![3.0, 5.0]);
        // population std of 1, 3, 5 is sqrt(8/3); the constant column keeps scale 1
        assert!((scaler.scales[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(scaler.scales[1], 1.0);
        let scaled = scaler.transform(data.view());
        assert!((scaled[(0, 0)] + (1.5f64).sqrt()).abs() < 1e-12);
        assert_eq!(scaled.column(1), array![0.0, 0.0, 0.0]);
        let back = scaler.inverse(scaled.view());
        assert!((back - data).iter().all(|d| d.abs() < 1e-12));
    }
}
