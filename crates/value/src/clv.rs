//! Customer lifetime value as lifetimes defines it: the purchases a customer is expected
//! to make in each month of the horizon, times the expected value of a purchase,
//! discounted by the monthly rate for every month, booked at the end of its month.

use crate::history::History;
use crate::purchase::PurchaseFit;

/// The expected purchases in each month of the horizon (month 1 first): the difference of
/// the cumulative expectations at the month's end and start, as lifetimes computes them.
pub fn monthly_purchases(
    fit: &PurchaseFit,
    history: &History,
    months: u32,
    periods_per_month: f64,
) -> Vec<f64> {
    let mut before = 0.0;
    (1..=months)
        .map(|month| {
            let cumulative = fit.expected_purchases(f64::from(month) * periods_per_month, history);
            let in_month = cumulative - before;
            before = cumulative;
            in_month
        })
        .collect()
}

/// The discount factor of month `month` (1-based) at `rate` per month: 1 / (1 + rate)^month.
pub fn discount_factor(rate: f64, month: u32) -> f64 {
    (1.0 + rate).powi(-(month as i32))
}

/// The discounted value of the monthly purchases at `spend` per purchase.
pub fn clv(monthly_purchases: &[f64], spend: f64, rate: f64) -> f64 {
    spend * discounted_purchases(monthly_purchases, rate)
}

/// The monthly purchases, each discounted to today: the CLV per unit of spend, the same for
/// every customer of one history.
pub fn discounted_purchases(monthly_purchases: &[f64], rate: f64) -> f64 {
    monthly_purchases
        .iter()
        .zip(1..)
        .map(|(purchases, month)| purchases * discount_factor(rate, month))
        .sum()
}
