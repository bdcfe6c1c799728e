//! segflow-value: what a customer is worth, from the RFM summary segflow computes. The
//! field's standard models ("buy till you die"): a purchase model (BG/NBD, MBG/NBD,
//! Pareto/NBD) for whether a customer is still active and how many purchases follow, a
//! spend model (Gamma-Gamma) for what a purchase is worth, and the discounted lifetime
//! value of the two. Knows no Arrow or DataFusion: the engine's value stage feeds it
//! numbers.
//!
//! | module | owns |
//! |---|---|
//! | `history` | a customer's history, and the distinct histories a fit sums over |
//! | `purchase` | the purchase models: log-likelihoods, fits, p_alive, expected purchases |
//! | `spend` | Gamma-Gamma: log-likelihood, fit, expected spend |
//! | `clv` | monthly expected purchases and their discounted value |
//! | `fit` | minimising a negative log-likelihood (argmin's BFGS) |
//! | `special` | ln Γ, 2F1 and log-space sums (a leaf) |

pub mod clv;
mod fit;
pub mod history;
pub mod purchase;
pub mod special;
pub mod spend;

pub use fit::MAX_ITERATIONS;
pub use history::{History, Patterns};
pub use purchase::{Forecast, PurchaseFit, PurchaseModel};
pub use spend::{Spend, SpendFit};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValueError {
    #[error("no customers to fit the model on")]
    NoCustomers,
    #[error(
        "no customer has a repeat purchase: the models learn how often customers buy and when they stop from repeat purchases"
    )]
    NoRepeatCustomers,
    #[error(
        "{model} could not be fitted: the likelihood is not finite after {evaluations} evaluations; a `penalizer` (e.g. 0.001) keeps the parameters in range"
    )]
    NotFitted {
        model: &'static str,
        evaluations: u64,
    },
    #[error(
        "gamma_gamma fitted q = {q:.4}, but a finite expected spend needs q > 1: spend varies too much between customers for the model (a few very large mean spends?); winsorize monetary_value in SQL or raise `penalizer`"
    )]
    UnboundedSpend { q: f64 },
}

#[cfg(test)]
mod tests;
