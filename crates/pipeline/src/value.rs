//! The value stage's settings (`value:`): which table and columns hold each customer's
//! purchase history, which models to fit, and over what horizon to value customers.

/// Days in a month wherever segflow converts: 365.25 / 12, so 12 months are a year.
pub const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The table with one row per customer; by default the segment stage's input.
    pub input: String,
    pub key: String,
    pub columns: ValueColumns,
    pub time_unit: TimeUnit,
    pub purchase_model: PurchaseModelKind,
    /// `None` (`spend_model: none`): no expected spend and no CLV.
    pub spend_model: Option<SpendModelKind>,
    pub horizon_months: u32,
    /// Per month.
    pub discount_rate: f64,
    pub penalizer: f64,
    /// Customers whose history the models cannot read are set aside in
    /// `rejects/value/` instead of failing the run.
    pub quarantine_invalid: bool,
    pub evaluate: Option<Evaluate>,
}

/// The input's columns for each quantity the models read, all in days (but frequency).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueColumns {
    /// Repeat purchases: purchases after the first (on distinct days, as the models count).
    pub frequency: String,
    /// Days from the first purchase to the last.
    pub recency: String,
    /// Days from the first purchase to the end of the period observed (`T`).
    pub age: String,
    /// The mean value of the repeat purchases; needed by the spend model.
    pub monetary_value: Option<String>,
}

impl ValueColumns {
    /// The columns in the order the stage reads them, each with its role's name.
    pub fn named(&self) -> Vec<(&'static str, &str)> {
        let mut named = vec![
            ("frequency", self.frequency.as_str()),
            ("recency", self.recency.as_str()),
            ("T", self.age.as_str()),
        ];
        if let Some(monetary) = &self.monetary_value {
            named.push(("monetary_value", monetary.as_str()));
        }
        named
    }
}

/// The model's period: recency, T and the evaluation period are converted from days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Day,
    Week,
    Month,
}

impl TimeUnit {
    pub const WORDS: [&'static str; 3] = ["day", "week", "month"];

    pub fn parse(word: &str) -> Option<TimeUnit> {
        match word {
            "day" => Some(TimeUnit::Day),
            "week" => Some(TimeUnit::Week),
            "month" => Some(TimeUnit::Month),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Day => "day",
            TimeUnit::Week => "week",
            TimeUnit::Month => "month",
        }
    }

    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Day => 1.0,
            TimeUnit::Week => 7.0,
            TimeUnit::Month => DAYS_PER_MONTH,
        }
    }

    /// Periods in a month, the step of the CLV's discounting.
    pub fn per_month(self) -> f64 {
        DAYS_PER_MONTH / self.days()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseModelKind {
    BgNbd,
    MbgNbd,
    ParetoNbd,
}

impl PurchaseModelKind {
    pub const WORDS: [&'static str; 3] = ["bg_nbd", "mbg_nbd", "pareto_nbd"];

    pub fn parse(word: &str) -> Option<PurchaseModelKind> {
        match word {
            "bg_nbd" => Some(PurchaseModelKind::BgNbd),
            "mbg_nbd" => Some(PurchaseModelKind::MbgNbd),
            "pareto_nbd" => Some(PurchaseModelKind::ParetoNbd),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            PurchaseModelKind::BgNbd => "bg_nbd",
            PurchaseModelKind::MbgNbd => "mbg_nbd",
            PurchaseModelKind::ParetoNbd => "pareto_nbd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendModelKind {
    GammaGamma,
}

impl SpendModelKind {
    /// With `none`, which turns the spend model off.
    pub const WORDS: [&'static str; 2] = ["gamma_gamma", "none"];
}

/// Judging the model on a later period the SQL measured (calibration and holdout).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluate {
    /// The input's column with each customer's purchases in the later period.
    pub actual_purchases: String,
    /// The later period's length, in days.
    pub period_days: f64,
}

/// The value stage's columns added to each customer's row, in this order.
pub const VALUE_COLUMNS: [&str; 4] = ["p_alive", "expected_purchases", "expected_spend", "clv"];

/// The columns of `VALUE_COLUMNS` a stage with this spend model writes.
pub fn value_columns(spend_model: Option<SpendModelKind>) -> &'static [&'static str] {
    match spend_model {
        Some(_) => &VALUE_COLUMNS,
        None => &VALUE_COLUMNS[..2],
    }
}

/// `26 weeks`, `6 months`, `90 days`, `1 year` -> days, as humantime reads durations (as
/// the freshness check's `max_age`); `None` for anything else.
pub fn parse_period_days(text: &str) -> Option<f64> {
    humantime::parse_duration(text.trim())
        .ok()
        .map(|duration| duration.as_secs_f64() / 86_400.0)
        .filter(|days| *days > 0.0)
}

/// `12 months` or `1 year` -> months; `None` when it is not a whole number of months.
pub fn parse_months(text: &str) -> Option<u32> {
    let (count, unit) = text.trim().split_once(char::is_whitespace)?;
    let count: u32 = count.parse().ok().filter(|c| *c > 0)?;
    match unit.trim().trim_end_matches('s') {
        "month" => Some(count),
        "year" => count.checked_mul(12),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_and_horizons_parse() {
        assert_eq!(parse_period_days("26 weeks"), Some(182.0));
        assert_eq!(parse_period_days("1 day"), Some(1.0));
        assert_eq!(parse_period_days("2 years"), Some(730.5));
        assert_eq!(parse_period_days("26"), None);
        assert_eq!(parse_period_days("-3 weeks"), None);
        assert_eq!(parse_period_days("3 fortnights"), None);
        assert_eq!(parse_months("12 months"), Some(12));
        assert_eq!(parse_months("1 year"), Some(12));
        assert_eq!(parse_months("1.5 years"), None);
        assert_eq!(parse_months("52 weeks"), None);
        assert!((TimeUnit::Week.per_month() - 4.348_214).abs() < 1e-6);
    }
}
