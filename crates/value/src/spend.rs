//! The spend model: Gamma-Gamma (Fader & Hardie 2013, note 025), the expected value of a
//! customer's purchases from the mean of the repeat ones, shrunk towards the population's
//! mean the fewer purchases there are. Fitted on customers with repeat purchases and a
//! positive mean spend.

use rayon::prelude::*;

use crate::ValueError;
use crate::fit::{Minimum, Start, minimise_with_gradient};
use crate::special::{digamma, ln_gamma};

const CHUNK: usize = 4096;

/// Repeat purchases and their mean value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spend {
    pub frequency: f64,
    pub monetary_value: f64,
}

impl Spend {
    /// Whether the model is fitted on this customer (repeat purchases, positive spend).
    pub fn fits_on(&self) -> bool {
        self.frequency > 0.0 && self.monetary_value > 0.0
    }
}

/// A fitted Gamma-Gamma model: p, q (q > 1: the mean spend is finite) and v (lifetimes'
/// and Fader & Hardie's gamma).
#[derive(Debug, Clone, PartialEq)]
pub struct SpendFit {
    pub params: [f64; 3],
    pub log_likelihood: f64,
    /// BFGS iterations (unknown when its line search gave up), and evaluations of the
    /// log-likelihood.
    pub iterations: Option<u64>,
    pub evaluations: u64,
    pub converged: bool,
    /// Customers it was fitted on.
    pub customers: usize,
}

pub const PARAM_NAMES: [&str; 3] = ["p", "q", "v"];

/// The log-likelihood of one customer's mean spend.
pub fn log_likelihood(params: &[f64; 3], spend: &Spend) -> f64 {
    let [p, q, v] = *params;
    let Spend {
        frequency: x,
        monetary_value: m,
    } = *spend;
    let px = p * x;
    ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q) + q * v.ln() + (px - 1.0) * m.ln() + px * x.ln()
        - (px + q) * (x * m + v).ln()
}

/// A customer as the fit reads it: ln of the mean spend and of the frequency taken once.
#[derive(Clone)]
struct Prepared {
    frequency: f64,
    monetary_value: f64,
    ln_monetary: f64,
    ln_frequency: f64,
}

fn prepared(customers: &[Spend]) -> Vec<Prepared> {
    customers
        .par_iter()
        .map(|c| Prepared {
            frequency: c.frequency,
            monetary_value: c.monetary_value,
            ln_monetary: c.monetary_value.ln(),
            ln_frequency: c.frequency.ln(),
        })
        .collect()
}

/// [`log_likelihood`] summed over `customers` (sorted by frequency, as [`fit`] keeps them).
fn total_log_likelihood(params: &[f64; 3], customers: &[Prepared]) -> f64 {
    total_and_gradient(params, customers).0
}

/// [`total_log_likelihood`] and its gradient in p, q and v, in one pass. With
/// u = ln(x m + v), a customer's terms are x (ψ(px + q) - ψ(px) + ln m + ln x - u),
/// ψ(px + q) - ψ(q) + ln v - u and q / v - (px + q) / (x m + v); the ln Γ and ψ terms depend
/// on the frequency alone.
fn total_and_gradient(params: &[f64; 3], customers: &[Prepared]) -> (f64, [f64; 3]) {
    let [p, q, v] = *params;
    let largest = customers
        .iter()
        .map(|c| c.frequency)
        .fold(0.0_f64, f64::max) as usize;
    let (psi_q, ln_v) = (digamma(q), v.ln());
    // Per frequency: the ln Γ terms, and the digamma terms of the p and q derivatives.
    let by_frequency: Vec<(f64, f64, f64)> = (0..=largest)
        .map(|x| {
            let px = p * x as f64;
            let psi_pxq = digamma(px + q);
            let psi_px = if x == 0 { 0.0 } else { digamma(px) };
            (
                ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q) + q * ln_v,
                psi_pxq - psi_px,
                psi_pxq - psi_q + ln_v,
            )
        })
        .collect();
    let sums: Vec<[f64; 4]> = customers
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut sum = [0.0; 4];
            for c in chunk {
                let x = c.frequency;
                let (gammas, d_p, d_q) = by_frequency[x as usize];
                let px = p * x;
                let total = x * c.monetary_value + v;
                let u = total.ln();
                sum[0] += gammas + (px - 1.0) * c.ln_monetary + px * c.ln_frequency - (px + q) * u;
                sum[1] += x * (d_p + c.ln_monetary + c.ln_frequency - u);
                sum[2] += d_q - u;
                sum[3] += q / v - (px + q) / total;
            }
            sum
        })
        .collect();
    let mut total = [0.0; 4];
    for sum in &sums {
        for (total, part) in total.iter_mut().zip(sum) {
            *total += part;
        }
    }
    (total[0], [total[1], total[2], total[3]])
}

/// Customers in the sample a large fit starts from.
const START_SAMPLE: usize = 50_000;

/// The mean negative log-likelihood plus the penalty, and its gradient, in the parameters'
/// logarithms.
fn cost_and_gradient(
    customers: &[Prepared],
    penalizer: f64,
) -> impl Fn(&[f64]) -> (f64, Vec<f64>) + '_ {
    let count = customers.len() as f64;
    move |log_params: &[f64]| {
        let params: [f64; 3] = std::array::from_fn(|i| log_params[i].exp());
        let penalty: f64 = params.iter().map(|p| p * p).sum::<f64>() * penalizer;
        let (ll, d) = total_and_gradient(&params, customers);
        // d/d ln θ = θ d/dθ.
        let gradient = (0..3)
            .map(|i| params[i] * (-d[i] / count + 2.0 * penalizer * params[i]))
            .collect::<Vec<f64>>();
        (-ll / count + penalty, gradient)
    }
}

/// Fits p, q and v on the customers with repeat purchases and positive spend, minimising
/// the mean negative log-likelihood plus `penalizer` times the squared parameters, as
/// lifetimes does.
pub fn fit(customers: &[Spend], penalizer: f64) -> Result<SpendFit, ValueError> {
    let mut sorted = customers.to_vec();
    // Sorted, the sums (and the fit) do not depend on the order customers came in. Both
    // values are non-negative, so their bits sort as the numbers do.
    sorted.par_sort_unstable_by_key(|c| (c.frequency.to_bits(), c.monetary_value.to_bits()));
    fit_in_order(&sorted, penalizer)
}

/// [`fit`], summing over the customers in the order given: for a caller whose customers are
/// in an order of their own that does not depend on how they were read.
pub fn fit_in_order(customers: &[Spend], penalizer: f64) -> Result<SpendFit, ValueError> {
    let fitted: Vec<Spend> = customers.iter().copied().filter(Spend::fits_on).collect();
    if fitted.is_empty() {
        return Err(ValueError::NoRepeatCustomers);
    }
    let fitted_prepared = prepared(&fitted);
    // Past a sample's size, the fit on every customer starts where the fit on an even
    // sample of them (every n-th in the order given) ended, with its estimate of the
    // curvature there: it takes a few passes over all customers instead of dozens.
    let start = match fitted_prepared.len() / START_SAMPLE {
        0 | 1 => Start::at(vec![0.1; 3]),
        step => {
            let sample: Vec<Prepared> = fitted_prepared.iter().step_by(step).cloned().collect();
            let sampled = minimise_with_gradient(
                cost_and_gradient(&sample, penalizer),
                Start::at(vec![0.1; 3]),
            );
            if sampled.log_params.iter().all(|p| p.is_finite()) {
                Start {
                    log_params: sampled.log_params,
                    inv_hessian: sampled.inv_hessian,
                }
            } else {
                Start::at(vec![0.1; 3])
            }
        }
    };
    let Minimum {
        log_params,
        iterations,
        evaluations,
        converged,
        ..
    } = minimise_with_gradient(cost_and_gradient(&fitted_prepared, penalizer), start);
    let params: [f64; 3] = std::array::from_fn(|i| log_params[i].exp());
    let log_likelihood = total_log_likelihood(&params, &fitted_prepared);
    if !log_likelihood.is_finite() {
        return Err(ValueError::NotFitted {
            model: "gamma_gamma",
            evaluations,
        });
    }
    if params[1] <= 1.0 {
        return Err(ValueError::UnboundedSpend { q: params[1] });
    }
    Ok(SpendFit {
        params,
        log_likelihood,
        iterations,
        evaluations,
        converged,
        customers: fitted.len(),
    })
}

impl SpendFit {
    /// The expected value of this customer's future purchases: the population's mean
    /// v p / (q - 1) for a customer without repeat purchases, moving towards the customer's
    /// own mean with every purchase.
    pub fn expected_spend(&self, spend: &Spend) -> f64 {
        let [p, q, v] = self.params;
        let population_mean = v * p / (q - 1.0);
        if !spend.fits_on() {
            return population_mean;
        }
        let own = p * spend.frequency / (p * spend.frequency + q - 1.0);
        (1.0 - own) * population_mean + own * spend.monetary_value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::central_gradient;

    #[test]
    fn the_closed_form_gradient_matches_differences() {
        let customers: Vec<Spend> = [(1.0, 20.0), (2.0, 35.5), (2.0, 12.0), (7.0, 80.25)]
            .iter()
            .map(|&(frequency, monetary_value)| Spend {
                frequency,
                monetary_value,
            })
            .collect();
        let prepared = prepared(&customers);
        for params in [[6.25, 3.74, 15.44], [0.7, 1.3, 200.0]] {
            let (ll, analytic) = total_and_gradient(&params, &prepared);
            let one_by_one: f64 = customers.iter().map(|c| log_likelihood(&params, c)).sum();
            assert!((ll - one_by_one).abs() < 1e-9);
            let numeric = central_gradient(
                &|p: &[f64]| total_log_likelihood(&[p[0], p[1], p[2]], &prepared),
                &params,
            );
            for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
                assert!(
                    (a - n).abs() <= 1e-6 * n.abs().max(1.0),
                    "{params:?} parameter {i}: {a} against {n}"
                );
            }
        }
    }
}
