//! What the report says about a column of numbers: quartiles, skew, box-plot whiskers and
//! histogram bins, computed the way pandas and numpy do by default so that an analyst who
//! checks a figure in a notebook finds the same one.

use crate::svg::{Axis, Boxed};

/// The `q` quantile of sorted values, linearly interpolated between the two nearest ranks
/// (numpy's default, `linear`; pandas' `quantile`).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = q * (n - 1) as f64;
            let below = rank.floor() as usize;
            let above = (below + 1).min(n - 1);
            sorted[below] + (rank - below as f64) * (sorted[above] - sorted[below])
        }
    }
}

/// A column's figures, over its finite values.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
    pub mean: f64,
    /// The adjusted Fisher-Pearson skewness (pandas' `skew`); `None` under 3 values or
    /// with no spread.
    pub skew: Option<f64>,
    /// Sorted, for whiskers and bins.
    sorted: Vec<f64>,
}

impl Summary {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Summary {
        let mut sorted: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let mean = sorted.iter().sum::<f64>() / count.max(1) as f64;
        let skew = (count >= 3)
            .then(|| {
                let n = count as f64;
                let m2 = sorted.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                let m3 = sorted.iter().map(|v| (v - mean).powi(3)).sum::<f64>() / n;
                (m2 > 0.0).then(|| (n * (n - 1.0)).sqrt() / (n - 2.0) * m3 / m2.powf(1.5))
            })
            .flatten();
        Summary {
            count,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            q1: quantile_sorted(&sorted, 0.25),
            median: quantile_sorted(&sorted, 0.5),
            q3: quantile_sorted(&sorted, 0.75),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            mean,
            skew,
            sorted,
        }
    }

    /// The finite values, sorted.
    pub fn values(&self) -> &[f64] {
        &self.sorted
    }

    /// The axis to draw these values on: a log axis when they are non-negative and
    /// skewed enough that a linear one would squeeze most of them into its first tenth,
    /// else a linear one.
    pub fn axis(&self) -> Axis {
        if self.count > 0
            && self.min >= 0.0
            && self.max > 10.0
            && self.max > 10.0 * (self.median + 1.0)
        {
            Axis::Log1p { max: self.max }
        } else {
            Axis::linear([self.min, self.max], self.min >= 0.0)
        }
    }

    /// The box of a box plot: quartiles, and whiskers at the furthest values within 1.5
    /// interquartile ranges of the box (Tukey's, as matplotlib and seaborn draw them).
    pub fn boxed(&self) -> Boxed {
        let reach = 1.5 * (self.q3 - self.q1);
        let low = self
            .sorted
            .iter()
            .copied()
            .find(|&v| v >= self.q1 - reach)
            .unwrap_or(self.min);
        let high = self
            .sorted
            .iter()
            .rev()
            .copied()
            .find(|&v| v <= self.q3 + reach)
            .unwrap_or(self.max);
        Boxed {
            low_whisker: low,
            q1: self.q1,
            median: self.median,
            q3: self.q3,
            high_whisker: high,
        }
    }

    /// `bins` bins of equal width on `axis` (so, on a log axis, of equal width in
    /// `log10(1 + x)`), from the minimum to the maximum: their edges and counts.
    pub fn histogram(&self, axis: Axis, bins: usize) -> (Vec<f64>, Vec<u64>) {
        let (min, max) = (self.min, self.max);
        if self.count == 0 {
            return (vec![0.0, 1.0], vec![0]);
        }
        let log = axis.is_log();
        let forward = |v: f64| if log { (1.0 + v.max(0.0)).log10() } else { v };
        let back = |t: f64| if log { 10f64.powf(t) - 1.0 } else { t };
        let (low, high) = (forward(min), forward(max));
        if high <= low {
            return (vec![min, min + 1.0], vec![self.count as u64]);
        }
        let width = (high - low) / bins as f64;
        let edges: Vec<f64> = (0..=bins)
            .map(|index| back(low + width * index as f64))
            .collect();
        let mut counts = vec![0u64; bins];
        for &value in &self.sorted {
            let bin = (((forward(value) - low) / width) as usize).min(bins - 1);
            counts[bin] += 1;
        }
        (edges, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_and_skew_match_pandas() {
        // pandas.Series([1, 2, 3, 4, 10]).quantile([.25, .5, .75]) -> 2.0, 3.0, 4.0; .skew() -> 1.697056274847714
        let summary = Summary::of([1.0, 2.0, 3.0, 4.0, 10.0]);
        assert_eq!((summary.q1, summary.median, summary.q3), (2.0, 3.0, 4.0));
        assert!(
            (summary.skew.unwrap() - 1.697_056_274_847_714).abs() < 1e-12,
            "{:?}",
            summary.skew
        );
        // numpy.quantile([1, 2, 3, 4], 0.25) -> 1.75
        assert_eq!(quantile_sorted(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
        assert_eq!(Summary::of([5.0, 5.0, 5.0]).skew, None);
    }

    #[test]
    fn skewed_values_get_a_log_axis() {
        let mut spend: Vec<f64> = (0..100).map(|i| i as f64).collect();
        spend.push(100_000.0);
        assert!(Summary::of(spend).axis().is_log());
        assert!(!Summary::of((0..100).map(|i| i as f64)).axis().is_log());
        assert!(!Summary::of([-5.0, 0.0, 1000.0]).axis().is_log());
    }

    #[test]
    fn whiskers_stop_at_the_last_value_within_reach() {
        let summary = Summary::of([1.0, 2.0, 3.0, 4.0, 10.0]);
        let boxed = summary.boxed();
        // IQR 2: reach 3 beyond the quartiles, so 10 is an outlier and 4 the top whisker.
        assert_eq!((boxed.low_whisker, boxed.high_whisker), (1.0, 4.0));
    }

    #[test]
    fn histogram_counts_every_value_once() {
        let summary = Summary::of((0..1000).map(|i| (i * i) as f64));
        for axis in [
            Axis::Log1p { max: summary.max },
            Axis::linear([0.0, summary.max], true),
        ] {
            let (edges, counts) = summary.histogram(axis, 20);
            assert_eq!(edges.len(), 21);
            assert_eq!(counts.iter().sum::<u64>(), 1000);
            assert!((edges[20] - summary.max).abs() < 1e-6 * summary.max);
        }
    }
}
