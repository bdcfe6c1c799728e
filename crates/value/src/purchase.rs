//! The purchase models ("buy till you die"): how many purchases a customer makes while
//! active, and when the customer stops. BG/NBD (Fader, Hardie & Lee 2005), MBG/NBD
//! (Batislam, Denizel & Filiztekin 2007) and Pareto/NBD (Schmittlein, Morrison & Colombo
//! 1987), with the log-likelihoods, probabilities and expectations lifetimes and
//! PyMC-Marketing compute, in log space where the terms of a customer with many purchases
//! would overflow.

use rayon::prelude::*;

use crate::ValueError;
use crate::fit::{Minimum, Start, minimise, minimise_with_gradient};
use crate::history::{History, Patterns};
use crate::special::{
    digamma, ln_gamma, ln_hyp2f1, ln_hyp2f1_many, log_add_exp, log_sub_exp, sigmoid,
};

/// Customers in the sample a fit on many more starts from.
const START_SAMPLE: usize = 50_000;

/// Histories per chunk of a parallel sum: the chunks are fixed, so the sum (and the fit)
/// is the same on any number of threads.
const CHUNK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseModel {
    BgNbd,
    MbgNbd,
    ParetoNbd,
}

impl PurchaseModel {
    pub const WORDS: [&'static str; 3] = ["bg_nbd", "mbg_nbd", "pareto_nbd"];

    pub fn parse(word: &str) -> Option<PurchaseModel> {
        match word {
            "bg_nbd" => Some(PurchaseModel::BgNbd),
            "mbg_nbd" => Some(PurchaseModel::MbgNbd),
            "pareto_nbd" => Some(PurchaseModel::ParetoNbd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PurchaseModel::BgNbd => "bg_nbd",
            PurchaseModel::MbgNbd => "mbg_nbd",
            PurchaseModel::ParetoNbd => "pareto_nbd",
        }
    }

    /// The parameters' names, in the order of [`PurchaseFit::params`].
    pub fn param_names(self) -> [&'static str; 4] {
        match self {
            PurchaseModel::BgNbd | PurchaseModel::MbgNbd => ["r", "alpha", "a", "b"],
            PurchaseModel::ParetoNbd => ["r", "alpha", "s", "beta"],
        }
    }

    /// The log-likelihood of one customer's history.
    pub fn log_likelihood(self, params: &[f64; 4], history: &History) -> f64 {
        let terms = FrequencyTerms::new(self, params, history.frequency);
        let alpha = params[1];
        let logs = ((alpha + history.age).ln(), (alpha + history.recency).ln());
        self.log_likelihood_with(params, history, &terms, logs)
    }

    /// The log-likelihood of every customer: each distinct history's, times its count.
    pub fn total_log_likelihood(self, params: &[f64; 4], patterns: &Patterns) -> f64 {
        self.total_with(params, patterns, &TimeIndex::of(patterns))
    }

    fn total_with(self, params: &[f64; 4], patterns: &Patterns, times: &TimeIndex) -> f64 {
        let cache = TermsCache::new(self, params, patterns);
        // ln(alpha + t) for each distinct T and recency: a population has a few hundred of
        // each, and these logarithms are most of a history's cost.
        let alpha = params[1];
        let ln_ages: Vec<f64> = times.ages.iter().map(|t| (alpha + t).ln()).collect();
        let ln_recencies: Vec<f64> = times.recencies.iter().map(|t| (alpha + t).ln()).collect();
        let indices: Vec<usize> = (0..patterns.len()).collect();
        let sums: Vec<f64> = indices
            .par_chunks(CHUNK)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|&i| {
                        let history = &patterns.histories[i];
                        let terms = cache.get(history.frequency);
                        let logs = (
                            ln_ages[times.age_of[i] as usize],
                            ln_recencies[times.recency_of[i] as usize],
                        );
                        patterns.weights[i] * self.log_likelihood_with(params, history, terms, logs)
                    })
                    .sum::<f64>()
            })
            .collect();
        sums.iter().sum()
    }

    /// The log-likelihood of every customer and its gradient in the parameters, for
    /// (M)BG/NBD, whose gradient has a closed form; `None` for Pareto/NBD, whose needs
    /// 2F1's derivatives.
    fn total_and_gradient(
        self,
        params: &[f64; 4],
        patterns: &Patterns,
        times: &TimeIndex,
    ) -> Option<(f64, [f64; 4])> {
        let modified = match self {
            PurchaseModel::BgNbd => false,
            PurchaseModel::MbgNbd => true,
            PurchaseModel::ParetoNbd => return None,
        };
        let cache = TermsCache::new(self, params, patterns);
        let gradients = FrequencyGradients::of(modified, params, cache.by_frequency.len());
        let [r, alpha, a, b] = *params;
        let of = |values: &[f64]| -> Vec<(f64, f64)> {
            values
                .iter()
                .map(|t| ((alpha + t).ln(), 1.0 / (alpha + t)))
                .collect()
        };
        let ages = of(&times.ages);
        let recencies = of(&times.recencies);
        let indices: Vec<usize> = (0..patterns.len()).collect();
        let sums: Vec<[f64; 5]> = indices
            .par_chunks(CHUNK)
            .map(|chunk| {
                let mut sum = [0.0; 5];
                for &i in chunk {
                    let x = patterns.histories[i].frequency;
                    let terms = cache.get(x);
                    let by_x = &gradients[x as usize];
                    let (ln_age, inv_age) = ages[times.age_of[i] as usize];
                    let (ln_recency, inv_recency) = recencies[times.recency_of[i] as usize];
                    let rho = r + x;
                    let stays = -rho * ln_age;
                    // ll, and the share `leave` of the likelihood in which the customer
                    // left at the last purchase; the derivatives follow from both.
                    let (ll, leave, d_r, d_alpha, leave_b) = if modified {
                        let left = terms.ln_leaving + rho * (ln_age - ln_recency);
                        let leave = sigmoid(left);
                        (
                            terms.fixed + stays + log_add_exp(left, 0.0),
                            leave,
                            -ln_age + leave * (ln_age - ln_recency),
                            -rho * inv_age + leave * rho * (inv_age - inv_recency),
                            b + x,
                        )
                    } else if x == 0.0 {
                        (terms.fixed + stays, 0.0, -ln_age, -rho * inv_age, 1.0)
                    } else {
                        let left = terms.ln_leaving - rho * ln_recency;
                        let leave = sigmoid(left - stays);
                        (
                            terms.fixed + log_add_exp(stays, left),
                            leave,
                            -(1.0 - leave) * ln_age - leave * ln_recency,
                            -rho * ((1.0 - leave) * inv_age + leave * inv_recency),
                            b + x - 1.0,
                        )
                    };
                    let w = patterns.weights[i];
                    sum[0] += w * ll;
                    sum[1] += w * (by_x.r + d_r);
                    sum[2] += w * (r / alpha + d_alpha);
                    sum[3] += w * (by_x.a + leave / a);
                    sum[4] += w * (by_x.b - leave / leave_b);
                }
                sum
            })
            .collect();
        let mut total = [0.0; 5];
        for sum in &sums {
            for (total, part) in total.iter_mut().zip(sum) {
                *total += part;
            }
        }
        Some((total[0], [total[1], total[2], total[3], total[4]]))
    }

    /// `logs`: ln(alpha + T) and ln(alpha + recency).
    fn log_likelihood_with(
        self,
        p: &[f64; 4],
        h: &History,
        terms: &FrequencyTerms,
        (ln_alpha_age, ln_alpha_recency): (f64, f64),
    ) -> f64 {
        let History {
            frequency: x,
            recency: t_x,
            age: t,
        } = *h;
        match self {
            PurchaseModel::BgNbd => {
                let r = p[0];
                let a3 = -(r + x) * ln_alpha_age;
                if x == 0.0 {
                    terms.fixed + a3
                } else {
                    let a4 = terms.ln_leaving - (r + x) * ln_alpha_recency;
                    terms.fixed + log_add_exp(a3, a4)
                }
            }
            PurchaseModel::MbgNbd => {
                let r = p[0];
                let a3 = -(r + x) * ln_alpha_age;
                let a4 = terms.ln_leaving + (r + x) * (ln_alpha_age - ln_alpha_recency);
                terms.fixed + a3 + log_add_exp(a4, 0.0)
            }
            PurchaseModel::ParetoNbd => {
                let [r, _, s, beta] = *p;
                let rsx = r + s + x;
                let Some(ln_a0) = pareto_ln_a0(p, x, t_x, t) else {
                    return f64::NAN;
                };
                let stays = -(r + x) * ln_alpha_age - s * (beta + t).ln();
                terms.fixed + log_add_exp(stays, s.ln() + ln_a0 - rsx.ln())
            }
        }
    }

    /// Fits the model to the histories by maximum likelihood, as lifetimes does: time
    /// scaled so that the longest T is 1, the mean negative log-likelihood plus
    /// `penalizer` times the sum of the squared (scaled) parameters minimised over the
    /// parameters' logarithms from ln 0.1... then the time parameters scaled back.
    pub fn fit(self, patterns: &Patterns, penalizer: f64) -> Result<PurchaseFit, ValueError> {
        if patterns.is_empty() {
            return Err(ValueError::NoCustomers);
        }
        if !patterns.histories.iter().any(|h| h.frequency > 0.0) {
            return Err(ValueError::NoRepeatCustomers);
        }
        let longest = patterns
            .histories
            .iter()
            .map(|h| h.age)
            .fold(0.0_f64, f64::max);
        let scale = 1.0 / longest;
        let scaled = patterns.scaled(scale);
        let fit_on = |patterns: &Patterns, start: Start| {
            let times = TimeIndex::of(patterns);
            let customers = patterns.customers();
            let cost = |log_params: &[f64]| {
                let params: [f64; 4] = std::array::from_fn(|i| log_params[i].exp());
                let penalty: f64 = params.iter().map(|p| p * p).sum::<f64>() * penalizer;
                -self.total_with(&params, patterns, &times) / customers + penalty
            };
            let cost_and_gradient = |log_params: &[f64]| {
                let params: [f64; 4] = std::array::from_fn(|i| log_params[i].exp());
                let penalty: f64 = params.iter().map(|p| p * p).sum::<f64>() * penalizer;
                let (ll, d) = self
                    .total_and_gradient(&params, patterns, &times)
                    .expect("only a model with a closed-form gradient is minimised with it");
                // In the parameters' logarithms: d/d ln θ = θ d/dθ.
                let gradient = (0..4)
                    .map(|i| params[i] * (-d[i] / customers + 2.0 * penalizer * params[i]))
                    .collect::<Vec<f64>>();
                (-ll / customers + penalty, gradient)
            };
            match self {
                PurchaseModel::ParetoNbd => minimise(cost, start),
                _ => minimise_with_gradient(cost_and_gradient, start),
            }
        };
        // Past a sample's size, the fit on every customer starts where the fit on an even
        // sample of them ended, with its estimate of the curvature there: near the optimum
        // and with the curvature known, it takes a few passes over all histories instead of
        // dozens.
        let default_start = Start::at(vec![0.1; 4]);
        let start = match (patterns.customers() as usize) / START_SAMPLE {
            0 | 1 => default_start,
            step => {
                let sampled = fit_on(&scaled.every_nth(step), default_start.clone());
                if sampled.log_params.iter().all(|p| p.is_finite()) {
                    Start {
                        log_params: sampled.log_params,
                        inv_hessian: sampled.inv_hessian,
                    }
                } else {
                    default_start
                }
            }
        };
        let Minimum {
            log_params,
            iterations,
            evaluations,
            converged,
            ..
        } = fit_on(&scaled, start);
        let mut params: [f64; 4] = std::array::from_fn(|i| log_params[i].exp());
        params[1] /= scale;
        if self == PurchaseModel::ParetoNbd {
            params[3] /= scale;
        }
        let log_likelihood = self.total_log_likelihood(&params, patterns);
        if !log_likelihood.is_finite() || params.iter().any(|p| !p.is_finite()) {
            return Err(ValueError::NotFitted {
                model: self.as_str(),
                evaluations,
            });
        }
        Ok(PurchaseFit {
            model: self,
            params,
            log_likelihood,
            iterations,
            evaluations,
            converged,
        })
    }
}

/// The terms of a customer's log-likelihood that depend on the frequency alone.
#[derive(Debug, Clone, Copy)]
struct FrequencyTerms {
    fixed: f64,
    /// (M)BG/NBD: ln a - ln(b + x - 1), resp. ln a - ln(b + x): the odds of leaving.
    ln_leaving: f64,
}

impl FrequencyTerms {
    fn new(model: PurchaseModel, p: &[f64; 4], x: f64) -> FrequencyTerms {
        let fixed = match model {
            PurchaseModel::BgNbd => {
                let [r, alpha, a, b] = *p;
                ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + ln_gamma(a + b) + ln_gamma(b + x)
                    - ln_gamma(b)
                    - ln_gamma(a + b + x)
            }
            PurchaseModel::MbgNbd => {
                let [r, alpha, a, b] = *p;
                ln_gamma(r + x) - ln_gamma(r)
                    + r * alpha.ln()
                    + ln_gamma(a + b)
                    + ln_gamma(b + x + 1.0)
                    - ln_gamma(b)
                    - ln_gamma(a + b + x + 1.0)
            }
            PurchaseModel::ParetoNbd => {
                let [r, alpha, s, beta] = *p;
                ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln() + s * beta.ln()
            }
        };
        let [_, _, a, b] = *p;
        let ln_leaving = match model {
            PurchaseModel::BgNbd => a.ln() - (b + x.max(1.0) - 1.0).ln(),
            PurchaseModel::MbgNbd => a.ln() - (b + x).ln(),
            PurchaseModel::ParetoNbd => 0.0,
        };
        FrequencyTerms { fixed, ln_leaving }
    }
}

/// The derivatives of [`FrequencyTerms::fixed`] in r, a and b (in alpha it is r / alpha
/// at every frequency), for (M)BG/NBD.
#[derive(Debug, Clone, Copy)]
struct FrequencyGradients {
    r: f64,
    a: f64,
    b: f64,
}

impl FrequencyGradients {
    /// For every frequency below `frequencies`.
    fn of(modified: bool, p: &[f64; 4], frequencies: usize) -> Vec<FrequencyGradients> {
        let [r, alpha, a, b] = *p;
        let (psi_r, psi_ab, psi_b) = (digamma(r), digamma(a + b), digamma(b));
        // MBG/NBD's dropout terms are BG/NBD's one purchase later.
        let shift = if modified { 1.0 } else { 0.0 };
        (0..frequencies)
            .map(|x| {
                let x = x as f64;
                let psi_abx = digamma(a + b + x + shift);
                FrequencyGradients {
                    r: digamma(r + x) - psi_r + alpha.ln(),
                    a: psi_ab - psi_abx,
                    b: psi_ab + digamma(b + x + shift) - psi_b - psi_abx,
                }
            })
            .collect()
    }
}

/// [`FrequencyTerms`] for every frequency up to the largest: frequencies are whole numbers,
/// and a population has few distinct ones, so ln Γ is taken per frequency, not per history.
struct TermsCache {
    by_frequency: Vec<FrequencyTerms>,
}

impl TermsCache {
    fn new(model: PurchaseModel, params: &[f64; 4], patterns: &Patterns) -> TermsCache {
        let largest = patterns
            .histories
            .iter()
            .map(|h| h.frequency)
            .fold(0.0_f64, f64::max) as usize;
        TermsCache {
            by_frequency: (0..=largest)
                .map(|x| FrequencyTerms::new(model, params, x as f64))
                .collect(),
        }
    }

    fn get(&self, frequency: f64) -> &FrequencyTerms {
        &self.by_frequency[frequency as usize]
    }
}

/// The distinct ages and recencies of a population, and each history's index into them.
struct TimeIndex {
    ages: Vec<f64>,
    recencies: Vec<f64>,
    age_of: Vec<u32>,
    recency_of: Vec<u32>,
}

impl TimeIndex {
    fn of(patterns: &Patterns) -> TimeIndex {
        let distinct = |values: Vec<f64>| {
            let mut sorted = values;
            sorted.sort_by(f64::total_cmp);
            sorted.dedup_by(|a, b| a.to_bits() == b.to_bits());
            sorted
        };
        let ages = distinct(patterns.histories.iter().map(|h| h.age).collect());
        let recencies = distinct(patterns.histories.iter().map(|h| h.recency).collect());
        let position = |values: &[f64], value: f64| {
            values
                .binary_search_by(|probe| probe.total_cmp(&value))
                .expect("every value is among the distinct ones") as u32
        };
        TimeIndex {
            age_of: patterns
                .histories
                .iter()
                .map(|h| position(&ages, h.age))
                .collect(),
            recency_of: patterns
                .histories
                .iter()
                .map(|h| position(&recencies, h.recency))
                .collect(),
            ages,
            recencies,
        }
    }
}

/// ln A_0 of Pareto/NBD's likelihood (Fader & Hardie's note 009, equation 18):
/// the probability mass of the customer having left between the last purchase and T.
fn pareto_ln_a0(p: &[f64; 4], x: f64, t_x: f64, t: f64) -> Option<f64> {
    let [r, alpha, s, beta] = *p;
    let (low, high, second) = if alpha < beta {
        (alpha, beta, r + x)
    } else {
        (beta, alpha, s + 1.0)
    };
    let gap = high - low;
    let rsx = r + s + x;
    let at_last = ln_hyp2f1(rsx, second, rsx + 1.0, gap / (high + t_x))? - rsx * (high + t_x).ln();
    let at_end = ln_hyp2f1(rsx, second, rsx + 1.0, gap / (high + t))? - rsx * (high + t).ln();
    if at_end >= at_last {
        // t_x = T: no time between the last purchase and the end.
        return Some(f64::NEG_INFINITY);
    }
    Some(log_sub_exp(at_last, at_end))
}

/// What a fit forecasts for one history, at each of the times asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The chance of being active at T.
    pub p_alive: f64,
    /// The expected purchases from T to T + each time.
    pub purchases: Vec<f64>,
    /// The chance of being active at T + each time.
    pub alive: Vec<f64>,
}

/// The parts of the forecasts some time after T that depend on the frequency and T alone.
#[derive(Debug, Clone, Copy)]
struct Ahead {
    /// The expected purchases of a customer known to be active at T.
    purchases: f64,
    /// The chance of staying active that long, given active at T.
    survival: f64,
}

/// A fitted purchase model.
#[derive(Debug, Clone, PartialEq)]
pub struct PurchaseFit {
    pub model: PurchaseModel,
    /// In the order of [`PurchaseModel::param_names`], in the histories' time unit.
    pub params: [f64; 4],
    /// Over every customer, with the parameters above.
    pub log_likelihood: f64,
    /// BFGS iterations (unknown when its line search gave up), and evaluations of the
    /// log-likelihood.
    pub iterations: Option<u64>,
    pub evaluations: u64,
    pub converged: bool,
}

impl PurchaseFit {
    /// The probability that a customer with this history is still active at T.
    pub fn p_alive(&self, h: &History) -> f64 {
        let History {
            frequency: x,
            recency: t_x,
            age: t,
        } = *h;
        match self.model {
            PurchaseModel::BgNbd => {
                if x == 0.0 {
                    return 1.0;
                }
                let [r, alpha, a, b] = self.params;
                let ln_odds =
                    (r + x) * ((alpha + t).ln() - (alpha + t_x).ln()) + (a / (b + x - 1.0)).ln();
                1.0 / (1.0 + ln_odds.exp())
            }
            PurchaseModel::MbgNbd => {
                let [r, alpha, a, b] = self.params;
                let ln_odds =
                    (r + x) * ((alpha + t).ln() - (alpha + t_x).ln()) + (a / (b + x)).ln();
                1.0 / (1.0 + ln_odds.exp())
            }
            PurchaseModel::ParetoNbd => {
                let [r, alpha, s, beta] = self.params;
                let Some(ln_a0) = pareto_ln_a0(&self.params, x, t_x, t) else {
                    return f64::NAN;
                };
                let ln_odds = s.ln() - (r + s + x).ln()
                    + (r + x) * (alpha + t).ln()
                    + s * (beta + t).ln()
                    + ln_a0;
                1.0 / (1.0 + ln_odds.exp())
            }
        }
    }

    /// The probability that a customer with this history is still active `t` periods
    /// after T. Given active at T, the purchase rate and the dropout are as the history
    /// left them (BG/NBD: λ ~ Gamma(r + x, α + T), p ~ Beta(a, b + x), MBG/NBD b + x + 1;
    /// Pareto/NBD: μ ~ Gamma(s, β + T)), and surviving `t` more periods has probability
    /// E[exp(-λ p t)] (a dropout at each of Poisson(λ t) purchases), resp. E[exp(-μ t)].
    /// For BG/NBD that expectation is 2F1(r + x, a; a + b + x; -t / (α + T)), summed after
    /// Pfaff's transformation, which maps its argument into [0, 1).
    pub fn p_alive_after(&self, t: f64, h: &History) -> f64 {
        let now = self.p_alive(h);
        if t == 0.0 {
            return now;
        }
        match self.ahead(h.frequency, h.age, t) {
            Some(ahead) => now * ahead.survival,
            None => f64::NAN,
        }
    }

    /// The expected purchases of a customer with this history in the `t` periods after T
    /// (BG/NBD: Fader, Hardie & Lee 2005, equation 10; MBG/NBD: Batislam et al. 2007;
    /// Pareto/NBD: Fader & Hardie's note 009, equation 41). NaN when 2F1 cannot be summed.
    pub fn expected_purchases(&self, t: f64, h: &History) -> f64 {
        if t == 0.0 {
            return 0.0;
        }
        match self.ahead(h.frequency, h.age, t) {
            // Purchases follow only while the customer is active at T.
            Some(ahead) => ahead.purchases * self.p_alive(h),
            None => f64::NAN,
        }
    }

    /// [`PurchaseFit::p_alive`], and the expected purchases up to and the chance of being
    /// active at each of `times` after T, for every history. The forecasts' costly parts
    /// (2F1, for (M)BG/NBD) depend on the frequency and T alone, so they are taken once per
    /// distinct pair, not per history.
    pub fn forecast(&self, patterns: &Patterns, times: &[f64]) -> Vec<Forecast> {
        let key = |h: &History| (h.frequency.to_bits(), h.age.to_bits());
        let mut pairs: Vec<(u64, u64)> = patterns.histories.iter().map(key).collect();
        pairs.par_sort_unstable();
        pairs.dedup();
        let ahead: Vec<Vec<Option<Ahead>>> = pairs
            .par_iter()
            .map(|&(x, big_t)| self.ahead_at(f64::from_bits(x), f64::from_bits(big_t), times))
            .collect();
        patterns
            .histories
            .par_iter()
            .map(|h| {
                let pair = pairs
                    .binary_search(&key(h))
                    .expect("every history's pair is among the pairs");
                let p_alive = self.p_alive(h);
                let (purchases, alive) = times
                    .iter()
                    .zip(&ahead[pair])
                    .map(|(&t, ahead)| match (t == 0.0, ahead) {
                        (true, _) => (0.0, p_alive),
                        (false, Some(ahead)) => {
                            (ahead.purchases * p_alive, p_alive * ahead.survival)
                        }
                        (false, None) => (f64::NAN, f64::NAN),
                    })
                    .unzip();
                Forecast {
                    p_alive,
                    purchases,
                    alive,
                }
            })
            .collect()
    }

    /// The parts of the forecasts `t` periods after T that depend on the frequency and T
    /// alone, those of a customer known to be active at T: the expected purchases are
    /// these times p_alive; `None` when 2F1 cannot be summed.
    fn ahead(&self, x: f64, big_t: f64, t: f64) -> Option<Ahead> {
        match self.model {
            PurchaseModel::BgNbd | PurchaseModel::MbgNbd => {
                let alpha = self.params[1];
                let z = t / (alpha + big_t + t);
                let [(a, b, c), (sa, sb, sc)] = self.hypergeometric_arguments(x);
                let ln_hyp = ln_hyp2f1(a, b, c, z)?;
                let ln_survival_hyp = ln_hyp2f1(sa, sb, sc, z)?;
                Some(self.bg_ahead(x, big_t, t, ln_hyp, ln_survival_hyp))
            }
            PurchaseModel::ParetoNbd => {
                let [r, alpha, s, beta] = self.params;
                let rate = (r + x).ln() + (beta + big_t).ln() - (alpha + big_t).ln();
                Some(Ahead {
                    purchases: (rate + ln_dropout_integral(s, beta + big_t, t)).exp(),
                    survival: (-s * (t / (beta + big_t)).ln_1p()).exp(),
                })
            }
        }
    }

    /// [`PurchaseFit::ahead`] at each of `times`: for (M)BG/NBD the 2F1 series of all
    /// times summed side by side, as their coefficients are the same.
    fn ahead_at(&self, x: f64, big_t: f64, times: &[f64]) -> Vec<Option<Ahead>> {
        if self.model == PurchaseModel::ParetoNbd {
            return times.iter().map(|&t| self.ahead(x, big_t, t)).collect();
        }
        let alpha = self.params[1];
        let zs: Vec<f64> = times.iter().map(|&t| t / (alpha + big_t + t)).collect();
        let [(a, b, c), (sa, sb, sc)] = self.hypergeometric_arguments(x);
        let ln_hyps = ln_hyp2f1_many(a, b, c, &zs);
        let ln_survival_hyps = ln_hyp2f1_many(sa, sb, sc, &zs);
        times
            .iter()
            .zip(ln_hyps.into_iter().zip(ln_survival_hyps))
            .map(|(&t, hyps)| match hyps {
                (Some(ln_hyp), Some(ln_survival_hyp)) => {
                    Some(self.bg_ahead(x, big_t, t, ln_hyp, ln_survival_hyp))
                }
                _ => None,
            })
            .collect()
    }

    /// (M)BG/NBD's two 2F1 at a frequency: the conditional expectation's and the survival's
    /// (a, b, c).
    fn hypergeometric_arguments(&self, x: f64) -> [(f64, f64, f64); 2] {
        let [r, _, a, b] = self.params;
        // MBG/NBD lets a customer leave at the first purchase too.
        let (hyp_b, c) = if self.model == PurchaseModel::MbgNbd {
            (b + x + 1.0, a + b + x)
        } else {
            (b + x, a + b + x - 1.0)
        };
        let beta_b = if self.model == PurchaseModel::MbgNbd {
            b + x + 1.0
        } else {
            b + x
        };
        [(r + x, hyp_b, c), (r + x, beta_b, a + beta_b)]
    }

    /// (M)BG/NBD's forecast `t` periods after T from its two 2F1 (as logarithms).
    fn bg_ahead(&self, x: f64, big_t: f64, t: f64, ln_hyp: f64, ln_survival_hyp: f64) -> Ahead {
        let [r, alpha, a, b] = self.params;
        let lead = if self.model == PurchaseModel::MbgNbd {
            (a + b + x) / (a - 1.0)
        } else {
            (a + b + x - 1.0) / (a - 1.0)
        };
        let left = -(ln_hyp + (r + x) * ((alpha + big_t).ln() - (alpha + t + big_t).ln())).exp_m1();
        let ln_survival = ln_survival_hyp - (r + x) * (t / (alpha + big_t)).ln_1p();
        Ahead {
            purchases: lead * left,
            survival: ln_survival.exp(),
        }
    }

    /// The expected purchases in `t` periods of a customer just acquired.
    pub fn expected_purchases_new(&self, t: f64) -> f64 {
        if t == 0.0 {
            return 0.0;
        }
        match self.model {
            PurchaseModel::BgNbd => {
                let [r, alpha, a, b] = self.params;
                let Some(ln_hyp) = ln_hyp2f1(r, b, a + b - 1.0, t / (alpha + t)) else {
                    return f64::NAN;
                };
                (a + b - 1.0) / (a - 1.0) * -(ln_hyp + r * (alpha / (alpha + t)).ln()).exp_m1()
            }
            PurchaseModel::MbgNbd => {
                let [r, alpha, a, b] = self.params;
                let Some(ln_hyp) = ln_hyp2f1(r, b + 1.0, a + b, t / (alpha + t)) else {
                    return f64::NAN;
                };
                b / (a - 1.0) * -(ln_hyp + r * (alpha / (alpha + t)).ln()).exp_m1()
            }
            PurchaseModel::ParetoNbd => {
                let [r, alpha, s, beta] = self.params;
                r * beta / alpha * ln_dropout_integral(s, beta, t).exp()
            }
        }
    }
}

/// ln of (1 - (m / (m + t))^(s - 1)) / (s - 1), and of its limit ln((m + t) / m) at s = 1.
fn ln_dropout_integral(s: f64, m: f64, t: f64) -> f64 {
    let ln_ratio = (m / (m + t)).ln();
    if (s - 1.0).abs() < 1e-10 {
        return (-ln_ratio).ln();
    }
    (-((s - 1.0) * ln_ratio).exp_m1() / (s - 1.0)).ln()
}

#[cfg(test)]
mod gradient_tests {
    use super::*;
    use crate::fit::central_gradient;

    #[test]
    fn closed_form_gradients_match_differences() {
        let histories: Vec<History> = [
            (0.0, 0.0, 30.0),
            (1.0, 12.5, 40.0),
            (4.0, 30.0, 31.0),
            (12.0, 50.0, 52.0),
            (0.0, 0.0, 3.0),
            (200.0, 38.0, 40.0),
        ]
        .iter()
        .map(|&(x, t_x, t)| History::new(x, t_x, t))
        .collect();
        let (patterns, _) = Patterns::of(&histories);
        let times = TimeIndex::of(&patterns);
        for model in [PurchaseModel::BgNbd, PurchaseModel::MbgNbd] {
            for params in [[0.25, 4.0, 0.8, 2.5], [1.7, 0.3, 3.0, 0.6]] {
                let (ll, analytic) = model
                    .total_and_gradient(&params, &patterns, &times)
                    .unwrap();
                assert!(
                    (ll - model.total_log_likelihood(&params, &patterns)).abs() < 1e-9,
                    "{model:?}"
                );
                let numeric = central_gradient(
                    &|p: &[f64]| model.total_log_likelihood(&[p[0], p[1], p[2], p[3]], &patterns),
                    &params,
                );
                for (i, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
                    assert!(
                        (a - n).abs() <= 1e-6 * n.abs().max(1.0),
                        "{model:?} {params:?} parameter {i}: {a} against {n}"
                    );
                }
            }
        }
    }
}
