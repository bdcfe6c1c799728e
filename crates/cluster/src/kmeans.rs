//! k-means over a contiguous row-major buffer: greedy k-means++ seeding, then Lloyd's
//! iterations with Hamerly's bounds.
//!
//! Why by hand rather than linfa-clustering: on the benchmark's customers
//! (bench/end_to_end.py, 450,000 rows x 3 features, k = 5, 3 restarts) linfa's k-means took
//! about twice scikit-learn's fit time (1.3 s against 0.7 s). Its seeding and first step
//! alone took 80 ms a restart: each distance goes through generic ndarray row views, the
//! centroid update is a second, single-threaded pass, and the update counts the old
//! centroid as one more member (m_k-means), which takes more iterations to settle than
//! Lloyd's mean. Here:
//! - seeding is scikit-learn's greedy k-means++: each next centroid is the best of
//!   2 + ln k candidates drawn in proportion to the squared distance to the nearest centroid;
//! - the update is Lloyd's (the mean of the members);
//! - Hamerly's bounds skip the rows whose centroid cannot have changed: an upper bound on
//!   the distance to their own centroid and a lower bound on the distance to any other,
//!   moved by how far the centroids moved. After the first few iterations most rows are
//!   skipped, and the iterations are still exactly Lloyd's;
//! - one pass over the rows per iteration: the pass that reassigns a chunk of rows also
//!   sums them by centroid for the next update (reading N x d values is the floor of an
//!   iteration's cost; the bounds arrays are read beside them);
//! - rows are processed in fixed chunks on rayon's threads, and the chunks' sums are added
//!   in chunk order, so the result does not depend on the number of cores.
//!
//! The tests check each step against plain Lloyd, and the crate's tests check the fits
//! against linfa-clustering's.

use ndarray::{Array1, Array2, ArrayView2};
use rand::Rng;
use rayon::prelude::*;

/// Rows per unit of parallel work. Fixed, so sums are added in the same order on any machine.
const CHUNK_ROWS: usize = 4096;

/// Where Lloyd's iterations ended.
pub(crate) struct Converged {
    pub centroids: Array2<f64>,
    /// Each row's nearest final centroid and its squared distance to it.
    pub assignments: Array1<usize>,
    pub squared_distances: Array1<f64>,
    /// Including `iterations_done` before this loop started.
    pub iterations: usize,
    pub converged: bool,
}

/// k centroids picked among the rows by greedy k-means++ (as scikit-learn's `kmeans_plusplus`).
pub(crate) fn plus_plus_seeds(data: ArrayView2<f64>, k: usize, rng: &mut impl Rng) -> Array2<f64> {
    let standard = data.as_standard_layout();
    let rows = Rows::of(&standard);
    let width = rows.width;
    let trials = 2 + (k as f64).ln() as usize;
    let mut seeds = Vec::with_capacity(k * width);
    seeds.extend_from_slice(rows.row(rng.gen_range(0..rows.len())));
    // Each row's squared distance to its nearest seed so far.
    let mut nearest: Vec<f64> = rows
        .values
        .par_chunks(width)
        .map(|row| squared_distance(row, &seeds))
        .collect();
    while seeds.len() < k * width {
        let mut running = 0.0;
        let cumulative: Vec<f64> = nearest
            .iter()
            .map(|d| {
                running += d;
                running
            })
            .collect();
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                let target = rng.r#gen::<f64>() * running;
                cumulative
                    .partition_point(|&c| c < target)
                    .min(rows.len() - 1)
            })
            .collect();
        // The candidate that leaves the smallest total squared distance.
        let totals: Vec<f64> = rows
            .chunks()
            .zip(nearest.par_chunks(CHUNK_ROWS))
            .map(|(chunk, nearest)| {
                let mut totals = vec![0.0; trials];
                for (row, &d) in chunk.chunks_exact(width).zip(nearest) {
                    for (total, &candidate) in totals.iter_mut().zip(&candidates) {
                        *total += d.min(squared_distance(row, rows.row(candidate)));
                    }
                }
                totals
            })
            .collect::<Vec<_>>()
            .into_iter()
            .fold(vec![0.0; trials], |mut sum, chunk| {
                sum.iter_mut().zip(chunk).for_each(|(s, x)| *s += x);
                sum
            });
        let best = (0..trials)
            .min_by(|&a, &b| totals[a].total_cmp(&totals[b]))
            .expect("at least two trials");
        let seed = rows.row(candidates[best]);
        nearest
            .par_iter_mut()
            .zip(rows.values.par_chunks(width))
            .for_each(|(d, row)| *d = d.min(squared_distance(row, seed)));
        seeds.extend_from_slice(seed);
    }
    Array2::from_shape_vec((k, width), seeds).expect("k rows of width values")
}

/// Runs Lloyd's iterations from `centroids` until the centroids move less than `tolerance`
/// (the sum of their squared shifts) or `max_iterations` (counting `iterations_done`) ran.
pub(crate) fn iterate(
    data: ArrayView2<f64>,
    centroids: Array2<f64>,
    iterations_done: usize,
    max_iterations: usize,
    tolerance: f64,
) -> Converged {
    let standard = data.as_standard_layout();
    let rows = Rows::of(&standard);
    let k = centroids.nrows();
    let mut centroids = centroids
        .as_standard_layout()
        .as_slice()
        .expect("standard layout is contiguous")
        .to_vec();
    let (mut bounds, mut members) = Bounds::exact(&rows, &centroids, k);
    let mut iterations = iterations_done;
    let mut converged = false;
    while iterations < max_iterations {
        let next = members.means(&centroids);
        iterations += 1;
        let moved: Vec<f64> = (0..k)
            .map(|c| {
                let (old, new) = (
                    centroid(&centroids, rows.width, c),
                    centroid(&next, rows.width, c),
                );
                squared_distance(old, new).sqrt()
            })
            .collect();
        centroids = next;
        if moved.iter().map(|m| m * m).sum::<f64>() <= tolerance {
            converged = true;
            break;
        }
        if iterations == max_iterations {
            break;
        }
        members = bounds.reassign(&rows, &centroids, k, &moved);
    }
    // The last update moved the centroids after the rows were assigned: assign them again.
    let (bounds, _) = Bounds::exact(&rows, &centroids, k);
    Converged {
        centroids: Array2::from_shape_vec((k, rows.width), centroids)
            .expect("k rows of width values"),
        assignments: bounds.assigned.iter().map(|&c| c as usize).collect(),
        squared_distances: bounds.upper.iter().map(|d| d * d).collect(),
        iterations,
        converged,
    }
}

struct Rows<'a> {
    values: &'a [f64],
    width: usize,
}

impl<'a> Rows<'a> {
    fn of(data: &'a ndarray::CowArray<'_, f64, ndarray::Ix2>) -> Rows<'a> {
        Rows {
            values: data.as_slice().expect("standard layout is contiguous"),
            width: data.ncols(),
        }
    }

    fn row(&self, i: usize) -> &'a [f64] {
        &self.values[i * self.width..(i + 1) * self.width]
    }

    fn len(&self) -> usize {
        self.values.len() / self.width
    }

    fn chunks(&self) -> impl IndexedParallelIterator<Item = &[f64]> {
        self.values.par_chunks(CHUNK_ROWS * self.width)
    }
}

fn centroid(centroids: &[f64], width: usize, c: usize) -> &[f64] {
    &centroids[c * width..(c + 1) * width]
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The nearest and second-nearest centroid of `row`: (nearest, its distance, second distance).
fn two_nearest(row: &[f64], centroids: &[f64], k: usize) -> (u32, f64, f64) {
    let width = row.len();
    let (mut best, mut first, mut second) = (0, f64::INFINITY, f64::INFINITY);
    for c in 0..k {
        let d = squared_distance(row, centroid(centroids, width, c));
        if d < first {
            second = first;
            first = d;
            best = c;
        } else if d < second {
            second = d;
        }
    }
    (best as u32, first.sqrt(), second.sqrt())
}

/// Per row: its centroid, an upper bound on the distance to it and a lower bound on the
/// distance to every other centroid.
struct Bounds {
    assigned: Vec<u32>,
    upper: Vec<f64>,
    lower: Vec<f64>,
}

impl Bounds {
    /// Every row measured against every centroid: the bounds are the distances themselves.
    /// Returns the members' sums too, gathered in the same pass over the rows.
    fn exact(rows: &Rows, centroids: &[f64], k: usize) -> (Bounds, Members) {
        let n = rows.len();
        let mut bounds = Bounds {
            assigned: vec![0; n],
            upper: vec![0.0; n],
            lower: vec![0.0; n],
        };
        let members = bounds.each_row(rows, k, |row, assigned, upper, lower| {
            (*assigned, *upper, *lower) = two_nearest(row, centroids, k);
        });
        (bounds, members)
    }

    /// Runs `update` on every row with its bounds, chunk by chunk on rayon's threads, and
    /// sums the rows by the centroid `update` leaves them with.
    fn each_row(
        &mut self,
        rows: &Rows,
        k: usize,
        update: impl Fn(&[f64], &mut u32, &mut f64, &mut f64) + Sync,
    ) -> Members {
        let width = rows.width;
        let chunks = rows
            .chunks()
            .zip(self.assigned.par_chunks_mut(CHUNK_ROWS))
            .zip(self.upper.par_chunks_mut(CHUNK_ROWS))
            .zip(self.lower.par_chunks_mut(CHUNK_ROWS))
            .map(|(((chunk, assigned), upper), lower)| {
                let mut members = Members::new(k, width);
                for (i, row) in chunk.chunks_exact(width).enumerate() {
                    update(row, &mut assigned[i], &mut upper[i], &mut lower[i]);
                    members.add(assigned[i], row);
                }
                members
            })
            .collect::<Vec<_>>();
        Members::merged(chunks, k, width)
    }

    /// Assigns every row to its nearest centroid after the centroids moved by `moved`,
    /// measuring only the rows whose bounds do not rule a change out, and returns the
    /// members' sums.
    fn reassign(&mut self, rows: &Rows, centroids: &[f64], k: usize, moved: &[f64]) -> Members {
        let width = rows.width;
        // A row nearer its centroid than half the way to that centroid's nearest neighbour
        // is nearest to it.
        let half_gap: Vec<f64> = (0..k)
            .map(|c| {
                (0..k)
                    .filter(|&other| other != c)
                    .map(|other| {
                        squared_distance(
                            centroid(centroids, width, c),
                            centroid(centroids, width, other),
                        )
                        .sqrt()
                    })
                    .fold(f64::INFINITY, f64::min)
                    / 2.0
            })
            .collect();
        let (farthest, farthest_move, second_move) =
            moved
                .iter()
                .enumerate()
                .fold((0, 0.0, 0.0), |(far, first, second), (c, &m)| {
                    if m > first {
                        (c, m, first)
                    } else {
                        (far, first, second.max(m))
                    }
                });
        self.each_row(rows, k, |row, assigned, upper, lower| {
            let own = *assigned as usize;
            *upper += moved[own];
            *lower -= if own == farthest {
                second_move
            } else {
                farthest_move
            };
            let bound = half_gap[own].max(*lower);
            if *upper > bound {
                *upper = squared_distance(row, centroid(centroids, width, own)).sqrt();
                if *upper > bound {
                    (*assigned, *upper, *lower) = two_nearest(row, centroids, k);
                }
            }
        })
    }
}

/// Per centroid, the sum and count of the rows assigned to it.
struct Members {
    sums: Vec<f64>,
    counts: Vec<u64>,
}

impl Members {
    fn new(k: usize, width: usize) -> Members {
        Members {
            sums: vec![0.0; k * width],
            counts: vec![0; k],
        }
    }

    fn add(&mut self, c: u32, row: &[f64]) {
        let c = c as usize;
        self.counts[c] += 1;
        let width = row.len();
        for (sum, value) in self.sums[c * width..(c + 1) * width].iter_mut().zip(row) {
            *sum += value;
        }
    }

    /// The chunks' sums added in chunk order, whichever thread finished first.
    fn merged(chunks: Vec<Members>, k: usize, width: usize) -> Members {
        chunks
            .into_iter()
            .fold(Members::new(k, width), |mut all, chunk| {
                all.sums
                    .iter_mut()
                    .zip(chunk.sums)
                    .for_each(|(s, x)| *s += x);
                all.counts
                    .iter_mut()
                    .zip(chunk.counts)
                    .for_each(|(n, x)| *n += x);
                all
            })
    }

    /// Each centroid moved to the mean of its rows; a centroid without rows stays where it was.
    fn means(mut self, centroids: &[f64]) -> Vec<f64> {
        let width = centroids.len() / self.counts.len();
        for (c, &count) in self.counts.iter().enumerate() {
            let mean = &mut self.sums[c * width..(c + 1) * width];
            if count == 0 {
                mean.copy_from_slice(centroid(centroids, width, c));
            } else {
                mean.iter_mut().for_each(|value| *value /= count as f64);
            }
        }
        self.sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand_xoshiro::rand_core::SeedableRng;

    /// Plain Lloyd, every row against every centroid each iteration, as the reference.
    fn brute_force(
        data: &Array2<f64>,
        mut centroids: Array2<f64>,
        iterations: usize,
    ) -> Vec<usize> {
        let nearest = |centroids: &Array2<f64>| -> Vec<usize> {
            data.outer_iter()
                .map(|row| {
                    (0..centroids.nrows())
                        .map(|c| {
                            let d = squared_distance(
                                row.as_slice().unwrap(),
                                centroids.row(c).as_slice().unwrap(),
                            );
                            (c, d)
                        })
                        .fold((0, f64::INFINITY), |b, x| if x.1 < b.1 { x } else { b })
                        .0
                })
                .collect()
        };
        for _ in 0..iterations {
            let assigned = nearest(&centroids);
            for c in 0..centroids.nrows() {
                let members: Vec<usize> = (0..data.nrows()).filter(|&i| assigned[i] == c).collect();
                if !members.is_empty() {
                    let mean = data
                        .select(ndarray::Axis(0), &members)
                        .mean_axis(ndarray::Axis(0))
                        .unwrap();
                    centroids.row_mut(c).assign(&mean);
                }
            }
        }
        nearest(&centroids)
    }

    /// Deterministic, uneven clouds of points: several chunks' worth, clusters that overlap.
    fn clouds(n: usize) -> Array2<f64> {
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        Array2::from_shape_fn((n, 3), |(i, j)| {
            let cloud = (i % 4) as f64;
            cloud * (j as f64 + 1.0) + 1.5 * next()
        })
    }

    #[test]
    fn matches_plain_lloyd_iteration_for_iteration() {
        let data = clouds(10_000);
        let start = data.select(ndarray::Axis(0), &[0, 1, 2, 3, 4]);
        for iterations in [1, 2, 5, 12] {
            let fitted = iterate(data.view(), start.clone(), 0, iterations, 0.0);
            assert_eq!(fitted.iterations, iterations);
            assert_eq!(
                fitted.assignments.to_vec(),
                brute_force(&data, start.clone(), iterations),
                "after {iterations} iterations"
            );
        }
    }

    #[test]
    fn stops_when_the_centroids_settle() {
        let data = clouds(2_000);
        let start = data.select(ndarray::Axis(0), &[0, 1, 2, 3]);
        let fitted = iterate(data.view(), start, 0, 300, 1e-12);
        assert!(fitted.converged);
        assert!(fitted.iterations < 300);
        // Settled: each centroid is the mean of its rows.
        for c in 0..4 {
            let members: Vec<usize> = (0..data.nrows())
                .filter(|&i| fitted.assignments[i] == c)
                .collect();
            let mean = data
                .select(ndarray::Axis(0), &members)
                .mean_axis(ndarray::Axis(0))
                .unwrap();
            for (a, b) in mean.iter().zip(fitted.centroids.row(c)) {
                assert!(
                    (a - b).abs() < 1e-6,
                    "{mean} vs {}",
                    fitted.centroids.row(c)
                );
            }
        }
        let inertia: f64 = fitted.squared_distances.sum();
        assert!(inertia > 0.0);
    }

    #[test]
    fn a_centroid_without_rows_stays_put() {
        let data = array![[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.1, 10.0]];
        let start = array![[0.0, 0.0], [10.0, 10.0], [100.0, 100.0]];
        let fitted = iterate(data.view(), start, 0, 10, 0.0);
        assert_eq!(fitted.centroids.row(2).to_vec(), vec![100.0, 100.0]);
        assert_eq!(fitted.assignments.to_vec(), vec![0, 0, 1, 1]);
        assert!((fitted.centroids[[0, 0]] - 0.05).abs() < 1e-12);
    }

    #[test]
    fn counts_the_iterations_done_before() {
        let data = clouds(500);
        let start = data.select(ndarray::Axis(0), &[0, 1]);
        let fitted = iterate(data.view(), start, 3, 4, 0.0);
        assert_eq!(fitted.iterations, 4);
        assert!(!fitted.converged);
    }

    #[test]
    fn seeds_are_distinct_rows_one_per_cloud() {
        // Four far-apart clouds: k-means++ all but always picks one seed in each.
        let data = Array2::from_shape_fn((4_000, 2), |(i, j)| {
            (i % 4) as f64 * 100.0 + ((i * 7 + j * 13) % 10) as f64 * 0.1
        });
        let seeds = |seed| {
            plus_plus_seeds(
                data.view(),
                4,
                &mut rand_xoshiro::Xoshiro256Plus::seed_from_u64(seed),
            )
        };
        let picked = seeds(42);
        let mut clouds: Vec<i64> = picked
            .outer_iter()
            .map(|row| (row[0] / 100.0).round() as i64)
            .collect();
        clouds.sort();
        assert_eq!(clouds, vec![0, 1, 2, 3]);
        for row in picked.outer_iter() {
            assert!(
                data.outer_iter().any(|r| r == row),
                "{row} is a row of the data"
            );
        }
        assert_eq!(seeds(42), picked, "the same seed picks the same rows");
    }

    #[test]
    fn fits_as_well_as_linfa_clustering() {
        use linfa::prelude::Fit;
        let data = clouds(20_000);
        let tolerance = 1e-4 * data.var_axis(ndarray::Axis(0), 0.0).mean().unwrap();
        let ours = (0..3)
            .map(|restart| {
                let mut rng = rand_xoshiro::Xoshiro256Plus::seed_from_u64(restart);
                let seeds = plus_plus_seeds(data.view(), 6, &mut rng);
                iterate(data.view(), seeds, 0, 300, tolerance)
                    .squared_distances
                    .sum()
            })
            .fold(f64::INFINITY, f64::min);
        let linfa = linfa_clustering::KMeans::params_with_rng(
            6,
            rand_xoshiro::Xoshiro256Plus::seed_from_u64(0),
        )
        .n_runs(3)
        .fit(&linfa::DatasetBase::from(data.clone()))
        .unwrap();
        // linfa reports the mean squared distance.
        let theirs = linfa.inertia() * data.nrows() as f64;
        assert!(ours <= theirs * 1.01, "ours {ours}, linfa's {theirs}");
    }
}
