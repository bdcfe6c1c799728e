//! Minimising a negative log-likelihood over a model's parameters, as lifetimes does with
//! scipy: BFGS (argmin's, with a More-Thuente line search) on the parameters' logarithms,
//! so every parameter stays positive, with the model's own gradient where it has one in
//! closed form and central differences where it does not.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::BFGS;

/// The most BFGS iterations a fit may take (lifetimes leaves scipy's default, 200 per
/// parameter; the models here converge in a few dozen).
pub const MAX_ITERATIONS: u64 = 1000;

/// Where a minimisation starts: the parameters' logarithms, and BFGS's estimate of the
/// inverse Hessian there (the identity when there is none).
#[derive(Debug, Clone)]
pub struct Start {
    pub log_params: Vec<f64>,
    pub inv_hessian: Option<Vec<Vec<f64>>>,
}

impl Start {
    pub fn at(log_params: Vec<f64>) -> Start {
        Start {
            log_params,
            inv_hessian: None,
        }
    }
}

/// Where a minimisation ended.
#[derive(Debug, Clone)]
pub struct Minimum {
    /// The parameters' logarithms at the minimum.
    pub log_params: Vec<f64>,
    /// BFGS's last estimate of the inverse Hessian, when it ended with one: a fit of the
    /// same cost on more data starts from it and needs few steps.
    pub inv_hessian: Option<Vec<Vec<f64>>>,
    /// BFGS iterations; unknown when the line search gave up.
    pub iterations: Option<u64>,
    /// Evaluations of the cost and of its gradient (one each, whether in closed form or
    /// by differences).
    pub evaluations: u64,
    pub converged: bool,
}

struct Objective<'a> {
    cost: &'a dyn Fn(&[f64]) -> f64,
    gradient: &'a dyn Fn(&[f64]) -> Vec<f64>,
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, param: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok((self.cost)(param))
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, param: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok((self.gradient)(param))
    }
}

/// Central differences with a step of about the cube root of machine precision, the step
/// that balances truncation and rounding error.
pub fn central_gradient(cost: &impl Fn(&[f64]) -> f64, param: &[f64]) -> Vec<f64> {
    let mut point = param.to_vec();
    (0..param.len())
        .map(|i| {
            let step = 6e-6 * param[i].abs().max(1.0);
            point[i] = param[i] + step;
            let up = cost(&point);
            point[i] = param[i] - step;
            let down = cost(&point);
            point[i] = param[i];
            (up - down) / (2.0 * step)
        })
        .collect()
}

/// A gradient this small at the best point counts as converged when the line search gave
/// up there (a smaller one is not resolved on a mean log-likelihood).
const CONVERGED_GRADIENT: f64 = 1e-6;

/// Minimises `cost` (a function of the parameters' logarithms) from `start`, with its
/// gradient by central differences.
pub fn minimise(cost: impl Fn(&[f64]) -> f64, start: Start) -> Minimum {
    let evaluations = AtomicU64::new(0);
    let counted = |param: &[f64]| {
        evaluations.fetch_add(1, Ordering::Relaxed);
        cost(param)
    };
    let gradient = |param: &[f64]| central_gradient(&counted, param);
    let minimum = search(&counted, &gradient, start);
    Minimum {
        evaluations: evaluations.into_inner(),
        ..minimum
    }
}

/// Minimises a cost (a function of the parameters' logarithms) from `start`,
/// `cost_and_gradient` giving it with its gradient in one pass over the data: the line
/// search asks for the gradient where it has just asked for the cost, and gets the one
/// that pass computed.
pub fn minimise_with_gradient(
    cost_and_gradient: impl Fn(&[f64]) -> (f64, Vec<f64>),
    start: Start,
) -> Minimum {
    let evaluations = AtomicU64::new(0);
    let last: Mutex<Option<(Vec<f64>, Vec<f64>)>> = Mutex::new(None);
    let remembered = || {
        last.lock()
            .expect("no fit panics while holding its gradient")
    };
    let evaluate = |param: &[f64]| {
        evaluations.fetch_add(1, Ordering::Relaxed);
        let (cost, gradient) = cost_and_gradient(param);
        *remembered() = Some((param.to_vec(), gradient.clone()));
        (cost, gradient)
    };
    let cost = |param: &[f64]| evaluate(param).0;
    let gradient = |param: &[f64]| {
        let cached = match remembered().as_ref() {
            Some((at, gradient)) if at.as_slice() == param => Some(gradient.clone()),
            _ => None,
        };
        cached.unwrap_or_else(|| evaluate(param).1)
    };
    let minimum = search(&cost, &gradient, start);
    Minimum {
        evaluations: evaluations.into_inner(),
        ..minimum
    }
}

/// BFGS from `start`, keeping the best point seen. A cost that is not finite at a trial
/// point (parameters the model cannot take) makes the line search step back.
fn search(
    cost: &dyn Fn(&[f64]) -> f64,
    gradient: &dyn Fn(&[f64]) -> Vec<f64>,
    start: Start,
) -> Minimum {
    let Start {
        log_params: start,
        inv_hessian,
    } = start;
    let best = Mutex::new((f64::INFINITY, start.clone()));
    let bounded = |param: &[f64]| {
        let value = cost(param);
        let mut best = best
            .lock()
            .expect("no fit panics while holding its best point");
        if value < best.0 {
            best.0 = value;
            best.1 = param.to_vec();
        }
        if value.is_finite() { value } else { f64::MAX }
    };
    let finite_gradient = |param: &[f64]| {
        let gradient = gradient(param);
        // Where the cost is not finite neither is its gradient: a zero one keeps BFGS's
        // update finite while the line search steps back.
        if gradient.iter().all(|g| g.is_finite()) {
            gradient
        } else {
            vec![0.0; param.len()]
        }
    };
    let problem = Objective {
        cost: &bounded,
        gradient: &finite_gradient,
    };
    let dimensions = start.len();
    let inv_hessian = inv_hessian.unwrap_or_else(|| {
        (0..dimensions)
            .map(|i| {
                (0..dimensions)
                    .map(|j| f64::from(u8::from(i == j)))
                    .collect()
            })
            .collect()
    });
    let solver = BFGS::new(MoreThuenteLineSearch::new())
        .with_tolerance_grad(1e-9)
        .and_then(|solver| solver.with_tolerance_cost(1e-14))
        .expect("the tolerances are positive");
    let result = Executor::new(problem, solver)
        .configure(|state| {
            state
                .param(start)
                .inv_hessian(inv_hessian)
                .max_iters(MAX_ITERATIONS)
        })
        .run();
    let (iterations, solver_converged, inv_hessian) = match &result {
        Ok(result) => (
            Some(result.state().get_iter()),
            matches!(
                result.state().get_termination_status(),
                TerminationStatus::Terminated(TerminationReason::SolverConverged)
            ),
            result.state().get_inv_hessian().cloned(),
        ),
        // The line search found no lower point along the last direction: where the
        // search stopped is judged by its gradient below.
        Err(_) => (None, false, None),
    };
    let (_, log_params) = best.into_inner().expect("no fit panicked");
    let flat = gradient(&log_params)
        .iter()
        .map(|g| g * g)
        .sum::<f64>()
        .sqrt()
        <= CONVERGED_GRADIENT;
    Minimum {
        log_params,
        inv_hessian,
        iterations,
        evaluations: 0,
        converged: solver_converged || flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_smooth_function() {
        // Rosenbrock's valley, the classic test of a quasi-Newton method.
        let rosenbrock = |p: &[f64]| (1.0 - p[0]).powi(2) + 100.0 * (p[1] - p[0] * p[0]).powi(2);
        let minimum = minimise(rosenbrock, Start::at(vec![-1.2, 1.0]));
        assert!(minimum.converged, "{minimum:?}");
        assert!((minimum.log_params[0] - 1.0).abs() < 1e-5, "{minimum:?}");
        assert!((minimum.log_params[1] - 1.0).abs() < 1e-5, "{minimum:?}");
    }
}
