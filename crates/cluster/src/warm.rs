//! Stable segments across runs: fit in the previous run's model units, start from its
//! centroids, and give each new segment the id of the previous centroid it matches.
//!
//! Reusing the previous transforms and scaler keeps "model units" the same between runs,
//! so centroid distances mean something; the match is the assignment of new to previous
//! centroids with the smallest total distance (Hungarian algorithm, `pathfinding`'s
//! Kuhn-Munkres). Segments beyond the previous count get ids after the largest previous id.

use ndarray::{Array2, ArrayView1};
use pathfinding::kuhn_munkres::kuhn_munkres_min;
use pathfinding::matrix::Matrix;

use crate::{
    ClusterError, Fitted, KMeansSettings, Prepared, Preprocessor, Result, Segmentation,
    feature_matrix, fit_from, fit_once,
};

/// What a run needs of the previous one: its preprocessing, its centroids (model units)
/// and the segment id of each centroid row.
#[derive(Debug, Clone)]
pub struct PreviousModel {
    pub preprocess: Preprocessor,
    pub centroids: Array2<f64>,
    pub ids: Vec<u32>,
}

/// Fits `settings.k` segments in the previous model's units, starting from its centroids
/// when k is unchanged (k-means++ otherwise), and numbers them to match it.
pub fn segment_from_previous(
    batches: &[arrow::array::RecordBatch],
    features: &[String],
    previous: &PreviousModel,
    settings: &KMeansSettings,
) -> Result<Segmentation> {
    same_features(previous, features)?;
    let raw = feature_matrix(batches, features)?;
    if raw.nrows() < settings.k {
        return Err(ClusterError::TooFewRows {
            rows: raw.nrows(),
            k: settings.k,
        });
    }
    let scaled = previous.preprocess.transform(raw.view(), features)?;
    crate::check_magnitudes(&raw, &scaled, features)?;
    crate::check_distinct(scaled.view(), settings.k)?;
    let prepared = Prepared::new(previous.preprocess.clone(), scaled);
    let tolerance = settings.tolerance * prepared.tolerance_scale;
    let fitted: Fitted = if previous.centroids.nrows() == settings.k {
        fit_from(
            prepared.scaled.view(),
            settings,
            previous.centroids.clone(),
            tolerance,
        )
    } else {
        let mut best: Option<Fitted> = None;
        for restart in 0..settings.restarts {
            let seed = settings.seed.wrapping_add(restart as u64);
            let fitted = fit_once(prepared.scaled.view(), settings, seed, tolerance);
            if best.as_ref().is_none_or(|b| fitted.inertia < b.inertia) {
                best = Some(fitted);
            }
        }
        best.expect("restarts is at least 1")
    };
    let ids = match_ids(&fitted.centroids, previous);
    Ok(crate::relabel_by_size(
        fitted,
        features.to_vec(),
        prepared.preprocess,
        Some(ids),
    ))
}

/// Assigns every row to the previous model's nearest centroid without fitting: its
/// transforms, scaler, centroids and ids as they are (a daily run between refits). The
/// segments keep the model's order and ids, not this data's sizes.
pub fn segment_with_model(
    batches: &[arrow::array::RecordBatch],
    features: &[String],
    previous: &PreviousModel,
) -> Result<Segmentation> {
    same_features(previous, features)?;
    let raw = feature_matrix(batches, features)?;
    let scaled = previous.preprocess.transform(raw.view(), features)?;
    crate::check_magnitudes(&raw, &scaled, features)?;
    let fitted = crate::assign(scaled.view(), previous.centroids.clone());
    let k = previous.centroids.nrows();
    let mut sizes = vec![0u64; k];
    for &row in &fitted.assignments {
        sizes[row] += 1;
    }
    Ok(Segmentation {
        features: features.to_vec(),
        preprocess: previous.preprocess.clone(),
        centroids: fitted.centroids,
        ids: previous.ids.clone(),
        assignments: fitted.assignments.iter().map(|&c| c as u32).collect(),
        distances: fitted.squared_distances.iter().map(|d| d.sqrt()).collect(),
        sizes,
        inertia: fitted.inertia,
        iterations: 0,
        converged: true,
    })
}

fn same_features(previous: &PreviousModel, features: &[String]) -> Result<()> {
    if previous.centroids.ncols() != features.len() {
        return Err(ClusterError::PreviousModel(format!(
            "it has {} features and this run {}",
            previous.centroids.ncols(),
            features.len()
        )));
    }
    Ok(())
}

/// For each new centroid row, the id it takes: the previous id it is matched to, or a new
/// one (after the largest previous id, by row) when there are more new than previous.
pub fn match_ids(centroids: &Array2<f64>, previous: &PreviousModel) -> Vec<u32> {
    let new = centroids.nrows();
    let old = previous.centroids.nrows();
    let distance = |a: ArrayView1<f64>, b: ArrayView1<f64>| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    };
    // Kuhn-Munkres works on integers and needs rows <= columns: nano-units of distance, and
    // the smaller side as rows.
    let cost = |i: usize, j: usize| {
        (distance(centroids.row(i), previous.centroids.row(j)) * 1e9).round() as i64
    };
    let mut ids: Vec<Option<u32>> = vec![None; new];
    if new <= old {
        let weights = Matrix::from_fn(new, old, |(i, j)| cost(i, j));
        let (_, columns) = kuhn_munkres_min(&weights);
        for (i, j) in columns.into_iter().enumerate() {
            ids[i] = Some(previous.ids[j]);
        }
    } else {
        let weights = Matrix::from_fn(old, new, |(j, i)| cost(i, j));
        let (_, rows) = kuhn_munkres_min(&weights);
        for (j, i) in rows.into_iter().enumerate() {
            ids[i] = Some(previous.ids[j]);
        }
    }
    let mut next = previous.ids.iter().max().map_or(0, |max| max + 1);
    ids.into_iter()
        .map(|id| {
            id.unwrap_or_else(|| {
                next += 1;
                next - 1
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::ScalerKind;
    use ndarray::array;

    use super::*;
    use crate::Scaler;

    fn previous(centroids: Array2<f64>, ids: Vec<u32>) -> PreviousModel {
        PreviousModel {
            preprocess: Preprocessor {
                transforms: vec![Default::default(); centroids.ncols()],
                clips: vec![None; centroids.ncols()],
                scaler: Scaler::fit(
                    Array2::<f64>::zeros((1, centroids.ncols())).view(),
                    ScalerKind::Standard,
                ),
            },
            centroids,
            ids,
        }
    }

    #[test]
    fn new_centroids_take_the_ids_of_the_nearest_previous_ones_overall() {
        let old = previous(array![[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], vec![0, 1, 2]);
        // The same three places, listed in another order and moved a little.
        let new = array![[0.5, 9.5], [0.2, 0.1], [9.0, 0.3]];
        assert_eq!(match_ids(&new, &old), [2, 0, 1]);
    }

    #[test]
    fn the_total_distance_decides_not_each_nearest() {
        // Greedy would give new row 0 the id of previous 0 (distance 1) and leave row 1 far
        // from previous 1; the best total gives row 0 id 1 and row 1 id 0.
        let old = previous(array![[0.0], [2.0]], vec![0, 1]);
        let new = array![[1.0], [-5.0]];
        assert_eq!(match_ids(&new, &old), [1, 0]);
    }

    #[test]
    fn extra_segments_get_new_ids_and_fewer_keep_a_subset() {
        let old = previous(array![[0.0], [10.0]], vec![0, 1]);
        assert_eq!(match_ids(&array![[10.0], [5.0], [0.0]], &old), [1, 2, 0]);
        let three = previous(array![[0.0], [10.0], [20.0]], vec![0, 1, 2]);
        assert_eq!(match_ids(&array![[19.0], [1.0]], &three), [2, 0]);
    }
}
