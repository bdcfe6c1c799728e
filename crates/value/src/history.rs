//! A customer's purchase history as the models read it, and the distinct histories of a
//! population with how many customers share each: the likelihood of a population is a sum
//! over customers, and customers with equal histories add equal terms, so a fit costs what
//! the distinct histories cost, not the customers.

use rayon::slice::ParallelSliceMut;

/// Frequency (repeat purchases), recency (time from the first to the last purchase) and
/// age (`T`: time from the first purchase to the end of the period observed), in the
/// model's periods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct History {
    pub frequency: f64,
    pub recency: f64,
    pub age: f64,
}

impl History {
    pub fn new(frequency: f64, recency: f64, age: f64) -> History {
        History {
            frequency,
            recency,
            age,
        }
    }

    /// Why the models cannot read this history, as lifetimes' checks word it; `None` when
    /// they can.
    pub fn problem(&self) -> Option<&'static str> {
        let History {
            frequency,
            recency,
            age,
        } = *self;
        if !(frequency.is_finite() && recency.is_finite() && age.is_finite()) {
            return Some("frequency, recency and T must be numbers");
        }
        if frequency < 0.0 || frequency.fract() != 0.0 {
            return Some("frequency must be a whole number of repeat purchases, at least 0");
        }
        if recency < 0.0 {
            return Some("recency is negative (the last purchase before the first)");
        }
        if recency > age {
            return Some("recency is larger than T (the last purchase after the period's end)");
        }
        if frequency == 0.0 && recency != 0.0 {
            return Some("recency must be 0 for a customer without repeat purchases");
        }
        if age <= 0.0 {
            return Some("T must be positive (the first purchase before the period's end)");
        }
        None
    }
}

/// The order [`Patterns`] keeps histories in: by frequency, recency and T. For the
/// non-negative values a history holds, the bits sort as the numbers do.
pub fn sort_key(h: &History) -> [u64; 3] {
    [h.frequency.to_bits(), h.recency.to_bits(), h.age.to_bits()]
}

/// The distinct histories of a population, each with its count of customers.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    pub histories: Vec<History>,
    pub weights: Vec<f64>,
}

impl Patterns {
    /// The distinct histories, sorted, and for every customer the index of its history.
    /// Sorted, they (and so the fit's sums) do not depend on the order customers came in.
    pub fn of(customers: &[History]) -> (Patterns, Vec<usize>) {
        // Each customer's history as bits beside its index, sorted: equal histories end up
        // next to each other, so each customer's pattern is found in one pass with no map
        // of histories.
        let mut sorted: Vec<([u64; 3], usize)> = customers
            .iter()
            .enumerate()
            .map(|(i, h)| (sort_key(h), i))
            .collect();
        sorted.par_sort_unstable();
        let in_order: Vec<History> = sorted.iter().map(|&(_, i)| customers[i]).collect();
        let (patterns, of_sorted) = Patterns::of_sorted(&in_order);
        let mut positions = vec![0; customers.len()];
        for ((_, customer), pattern) in sorted.into_iter().zip(of_sorted) {
            positions[customer] = pattern;
        }
        (patterns, positions)
    }

    /// [`Patterns::of`] for customers already in the order of [`sort_key`], in one pass:
    /// for a caller that sorts its customers by more than the history anyway.
    pub fn of_sorted(sorted: &[History]) -> (Patterns, Vec<usize>) {
        debug_assert!(sorted.is_sorted_by_key(sort_key));
        let mut histories: Vec<History> = Vec::new();
        let mut weights: Vec<f64> = Vec::new();
        let mut previous = None;
        let positions = sorted
            .iter()
            .map(|history| {
                let key = sort_key(history);
                if previous != Some(key) {
                    histories.push(*history);
                    weights.push(0.0);
                    previous = Some(key);
                }
                *weights.last_mut().expect("just pushed") += 1.0;
                histories.len() - 1
            })
            .collect();
        (Patterns { histories, weights }, positions)
    }

    pub fn len(&self) -> usize {
        self.histories.len()
    }

    pub fn is_empty(&self) -> bool {
        self.histories.is_empty()
    }

    pub fn customers(&self) -> f64 {
        self.weights.iter().sum()
    }

    /// An even sample of the customers: every `step`-th in the histories' order, so each
    /// history keeps the customers of it that the sample takes (and is dropped with none).
    pub fn every_nth(&self, step: usize) -> Patterns {
        let mut sample = Patterns::default();
        let mut seen = 0u64;
        for (history, weight) in self.histories.iter().zip(&self.weights) {
            let before = seen;
            seen += *weight as u64;
            let taken = seen / step as u64 - before / step as u64;
            if taken > 0 {
                sample.histories.push(*history);
                sample.weights.push(taken as f64);
            }
        }
        sample
    }

    /// The same histories with time in units `scale` times as long (recency and T times
    /// `scale`).
    pub(crate) fn scaled(&self, scale: f64) -> Patterns {
        Patterns {
            histories: self
                .histories
                .iter()
                .map(|h| History::new(h.frequency, h.recency * scale, h.age * scale))
                .collect(),
            weights: self.weights.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_histories_are_counted_once_with_their_weight() {
        let a = History::new(2.0, 30.0, 40.0);
        let b = History::new(0.0, 0.0, 40.0);
        let (patterns, positions) = Patterns::of(&[a, b, a, a]);
        assert_eq!(patterns.histories, [b, a]);
        assert_eq!(patterns.weights, [1.0, 3.0]);
        assert_eq!(positions, [1, 0, 1, 1]);
        // In any order, the same distinct histories in the same order.
        let (reordered, _) = Patterns::of(&[a, a, b, a]);
        assert_eq!(reordered.histories, patterns.histories);
        // Customers already sorted: the same patterns, found in one pass.
        let (sorted, positions) = Patterns::of_sorted(&[b, a, a, a]);
        assert_eq!(sorted.histories, patterns.histories);
        assert_eq!(sorted.weights, patterns.weights);
        assert_eq!(positions, [0, 1, 1, 1]);
    }

    #[test]
    fn an_even_sample_takes_every_nth_customer() {
        let (a, b, c) = (
            History::new(0.0, 0.0, 40.0),
            History::new(1.0, 3.0, 40.0),
            History::new(2.0, 30.0, 40.0),
        );
        // Customers in order: a a a a a b c c c c (a sample of every 3rd: the 3rd, 6th, 9th).
        let patterns = Patterns {
            histories: vec![a, b, c],
            weights: vec![5.0, 1.0, 4.0],
        };
        let sample = patterns.every_nth(3);
        assert_eq!(sample.histories, [a, b, c]);
        assert_eq!(sample.weights, [1.0, 1.0, 1.0]);
        let sample = patterns.every_nth(5);
        assert_eq!(sample.histories, [a, c]);
        assert_eq!(sample.weights, [1.0, 1.0]);
    }

    #[test]
    fn histories_the_models_cannot_read_say_why() {
        assert_eq!(History::new(2.0, 30.0, 40.0).problem(), None);
        assert!(
            History::new(2.5, 30.0, 40.0)
                .problem()
                .unwrap()
                .contains("whole")
        );
        assert!(
            History::new(2.0, 50.0, 40.0)
                .problem()
                .unwrap()
                .contains("larger than T")
        );
        assert!(
            History::new(0.0, 3.0, 40.0)
                .problem()
                .unwrap()
                .contains("must be 0")
        );
        assert!(
            History::new(1.0, -1.0, 40.0)
                .problem()
                .unwrap()
                .contains("negative")
        );
        assert!(History::new(f64::NAN, 1.0, 40.0).problem().is_some());
    }
}
