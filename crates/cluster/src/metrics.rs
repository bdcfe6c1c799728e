//! Cluster quality metrics, as scikit-learn defines them, to choose k.
//!
//! Each takes the data in model units and a label per row; cluster means are computed from
//! the labels (as scikit-learn does), not taken from the fit.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
use rand::seq::index::sample;
use rand_xoshiro::Xoshiro256Plus;
use rand_xoshiro::rand_core::SeedableRng;

fn distance(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Per cluster, the mean of its rows, and its size.
fn cluster_means(data: ArrayView2<f64>, labels: &[usize], k: usize) -> (Array2<f64>, Vec<usize>) {
    let mut sums = Array2::zeros((k, data.ncols()));
    let mut sizes = vec![0; k];
    for (row, &label) in data.outer_iter().zip(labels) {
        let mut sum = sums.row_mut(label);
        sum += &row;
        sizes[label] += 1;
    }
    for (mut sum, &size) in sums.outer_iter_mut().zip(&sizes) {
        if size > 0 {
            sum /= size as f64;
        }
    }
    (sums, sizes)
}

/// Between-cluster over within-cluster dispersion, each divided by its degrees of freedom:
/// `[B / (k - 1)] / [W / (n - k)]`. Higher is better.
pub fn calinski_harabasz(data: ArrayView2<f64>, labels: &[usize], k: usize) -> f64 {
    let n = data.nrows();
    let (means, sizes) = cluster_means(data, labels, k);
    let overall = data.mean_axis(Axis(0)).expect("rows");
    let between: f64 = means
        .outer_iter()
        .zip(&sizes)
        .map(|(mean, &size)| size as f64 * distance(mean, overall.view()).powi(2))
        .sum();
    let within: f64 = data
        .outer_iter()
        .zip(labels)
        .map(|(row, &label)| distance(row, means.row(label)).powi(2))
        .sum();
    if within == 0.0 {
        return 1.0;
    }
    between * (n - k) as f64 / (within * (k - 1) as f64)
}

/// The mean over clusters of the worst ratio of summed spreads to centroid distance:
/// `mean_i max_j (s_i + s_j) / d(c_i, c_j)`, `s` the mean distance of a cluster's rows to
/// its mean. Lower is better.
pub fn davies_bouldin(data: ArrayView2<f64>, labels: &[usize], k: usize) -> f64 {
    let (means, sizes) = cluster_means(data, labels, k);
    let mut spread = vec![0.0; k];
    for (row, &label) in data.outer_iter().zip(labels) {
        spread[label] += distance(row, means.row(label));
    }
    for (s, &size) in spread.iter_mut().zip(&sizes) {
        if size > 0 {
            *s /= size as f64;
        }
    }
    let worst: f64 = (0..k)
        .map(|i| {
            (0..k)
                .filter(|&j| j != i)
                .map(|j| {
                    let d = distance(means.row(i), means.row(j));
                    if d == 0.0 {
                        0.0
                    } else {
                        (spread[i] + spread[j]) / d
                    }
                })
                .fold(0.0, f64::max)
        })
        .sum();
    worst / k as f64
}

/// The mean silhouette coefficient of `sample` rows drawn with `seed` (all rows when there
/// are fewer), distances taken within the sample, as `silhouette_score(sample_size=...)`:
/// per row `(b - a) / max(a, b)`, `a` its mean distance to its own cluster, `b` to the
/// nearest other; 0 for a row alone in its cluster. Higher is better. Costs sample² x d.
pub fn silhouette(
    data: ArrayView2<f64>,
    labels: &[usize],
    k: usize,
    sample_size: usize,
    seed: u64,
) -> f64 {
    let n = data.nrows();
    let rows: Vec<usize> = if sample_size >= n {
        (0..n).collect()
    } else {
        let mut rng = Xoshiro256Plus::seed_from_u64(seed);
        let mut picked = sample(&mut rng, n, sample_size).into_vec();
        picked.sort_unstable();
        picked
    };
    let mut total = 0.0;
    for &i in &rows {
        let mut sums = vec![0.0; k];
        let mut counts = vec![0usize; k];
        for &j in &rows {
            if i != j {
                sums[labels[j]] += distance(data.row(i), data.row(j));
                counts[labels[j]] += 1;
            }
        }
        let own = labels[i];
        if counts[own] == 0 {
            continue;
        }
        let a = sums[own] / counts[own] as f64;
        let b = (0..k)
            .filter(|&c| c != own && counts[c] > 0)
            .map(|c| sums[c] / counts[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            total += (b - a) / a.max(b);
        }
    }
    total / rows.len() as f64
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    // Two clusters on a line: {0, 2} around 1 and {10, 12} around 11.
    fn line() -> (Array2<f64>, Vec<usize>) {
        (array![[0.0], [2.0], [10.0], [12.0]], vec![0, 0, 1, 1])
    }

    #[test]
    fn calinski_harabasz_by_hand() {
        // Overall mean 6; B = 2*25 + 2*25 = 100; W = 4 * 1 = 4; (100/1) / (4/2) = 50.
        let (data, labels) = line();
        assert!((calinski_harabasz(data.view(), &labels, 2) - 50.0).abs() < 1e-12);
    }

    #[test]
    fn davies_bouldin_by_hand() {
        // Spreads 1 and 1, centroids 10 apart: (1 + 1) / 10 = 0.2 for both clusters.
        let (data, labels) = line();
        assert!((davies_bouldin(data.view(), &labels, 2) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn silhouette_by_hand() {
        // Row 0: a = 2, b = (10 + 12) / 2 = 11, s = 9/11. Row 1: a = 2, b = (8 + 10) / 2 = 9,
        // s = 7/9. Rows 2 and 3 mirror rows 1 and 0.
        let (data, labels) = line();
        let expected = (2.0 * 9.0 / 11.0 + 2.0 * 7.0 / 9.0) / 4.0;
        assert!((silhouette(data.view(), &labels, 2, 100, 1) - expected).abs() < 1e-12);
    }

    #[test]
    fn a_sampled_silhouette_is_seeded() {
        let data = Array2::from_shape_fn((500, 2), |(i, j)| {
            ((i * 7 + j * 13) % 50) as f64 + (i % 2) as f64 * 100.0
        });
        let labels: Vec<usize> = (0..500).map(|i| i % 2).collect();
        let a = silhouette(data.view(), &labels, 2, 50, 9);
        assert_eq!(a, silhouette(data.view(), &labels, 2, 50, 9));
        // Spread 50 within a group, 100 between them (on both axes).
        assert!(a > 0.75, "two far-apart groups: {a}");
    }
}
