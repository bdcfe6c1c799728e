//! `warn_if` / `error_if`: when a check's failing rows are too many, as a count or as a share
//! of the rows checked, written as dbt and Soda write them (`"> 0"`, `">= 2.5%"`).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub comparison: Comparison,
    pub limit: Limit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Failing rows.
    Count(u64),
    /// Failing rows over rows checked, 0 to 1 (written as a percentage).
    Share(f64),
}

impl Threshold {
    /// Failing rows above zero: a check's default.
    pub const ANY: Threshold = Threshold {
        comparison: Comparison::Greater,
        limit: Limit::Count(0),
    };

    /// `> 0`, `>= 100`, `> 2.5%`, `!= 0`; spaces optional.
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let text = text.trim();
        let operators = [
            (">=", Comparison::GreaterOrEqual),
            ("<=", Comparison::LessOrEqual),
            ("!=", Comparison::NotEqual),
            ("==", Comparison::Equal),
            (">", Comparison::Greater),
            ("<", Comparison::Less),
            ("=", Comparison::Equal),
        ];
        let expected = || {
            format!(
                "`{text}` is not a threshold: write a comparison and a count or a percentage, e.g. `> 0`, `> 100` or `>= 2.5%`"
            )
        };
        let (comparison, rest) = operators
            .iter()
            .find_map(|(word, comparison)| text.strip_prefix(word).map(|rest| (*comparison, rest)))
            .ok_or_else(expected)?;
        let rest = rest.trim();
        let limit = match rest.strip_suffix('%') {
            Some(percent) => {
                let percent: f64 = percent.trim().parse().map_err(|_| expected())?;
                if !(0.0..=100.0).contains(&percent) {
                    return Err(format!(
                        "`{text}`: a percentage is between 0% and 100% of the rows checked"
                    ));
                }
                Limit::Share(percent / 100.0)
            }
            None => Limit::Count(rest.parse().map_err(|_| expected())?),
        };
        Ok(Threshold { comparison, limit })
    }

    /// Whether `failing` of `checked` rows cross the threshold. A share of no rows is 0.
    pub fn crossed(&self, failing: u64, checked: u64) -> bool {
        let (value, limit) = match self.limit {
            Limit::Count(limit) => (failing as f64, limit as f64),
            Limit::Share(limit) => (failing as f64 / checked.max(1) as f64, limit),
        };
        match self.comparison {
            Comparison::Greater => value > limit,
            Comparison::GreaterOrEqual => value >= limit,
            Comparison::Less => value < limit,
            Comparison::LessOrEqual => value <= limit,
            Comparison::Equal => value == limit,
            Comparison::NotEqual => value != limit,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let comparison = match self.comparison {
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Equal => "=",
            Comparison::NotEqual => "!=",
        };
        match self.limit {
            Limit::Count(count) => write!(f, "{comparison} {count}"),
            // Shares are written back as percentages, as the user wrote them.
            Limit::Share(share) => write!(f, "{comparison} {}%", 100.0 * share),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_percentages_and_writes_them_back() {
        for (text, shown) in [
            ("> 0", "> 0"),
            (">100", "> 100"),
            (">= 2.5%", ">= 2.5%"),
            ("!= 0", "!= 0"),
            ("<= 10 %", "<= 10%"),
        ] {
            assert_eq!(Threshold::parse(text).unwrap().to_string(), shown);
        }
        for bad in ["0", "> ", "> x", ">> 1", "> -1", "> 150%", "about 3"] {
            assert!(Threshold::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_compare_with_failing_rows_and_shares_with_their_share() {
        let share = Threshold::parse(">= 2.5%").unwrap();
        assert!(!share.crossed(24, 1000));
        assert!(share.crossed(25, 1000));
        let count = Threshold::parse("> 100").unwrap();
        assert!(!count.crossed(100, 200));
        assert!(count.crossed(101, 100_000));
        assert!(!Threshold::ANY.crossed(0, 0));
        assert!(!share.crossed(0, 0), "no rows checked, no share");
    }
}
