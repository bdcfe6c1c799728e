//! The models against the values their papers, Bruce Hardie's spreadsheets, R's BTYD and
//! BTYDplus, and lifetimes' own tests publish, on the CDNOW sample they all use.

use crate::history::{History, Patterns};
use crate::purchase::{PurchaseFit, PurchaseModel};
use crate::spend::{self, Spend, SpendFit};
use crate::{ValueError, clv};

struct Cdnow {
    histories: Vec<History>,
    spends: Vec<Spend>,
}

fn cdnow() -> Cdnow {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/cdnow_summary.csv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut cdnow = Cdnow {
        histories: Vec::new(),
        spends: Vec::new(),
    };
    for line in text.lines().skip(1) {
        let fields: Vec<f64> = line.split(',').map(|f| f.parse().unwrap()).collect();
        cdnow
            .histories
            .push(History::new(fields[1], fields[2], fields[3]));
        cdnow.spends.push(Spend {
            frequency: fields[1],
            monetary_value: fields[4],
        });
    }
    cdnow
}

fn fitted(model: PurchaseModel) -> PurchaseFit {
    let (patterns, _) = Patterns::of(&cdnow().histories);
    model.fit(&patterns, 0.0).unwrap()
}

fn close(actual: f64, expected: f64, tolerance: f64) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{actual} is not {expected} within {tolerance}"
    );
}

#[test]
fn bg_nbd_log_likelihood_of_one_customer() {
    let params = [0.25, 4.0, 0.8, 2.5];
    let ll = |x, t_x| PurchaseModel::BgNbd.log_likelihood(&params, &History::new(x, t_x, 40.0));
    close(ll(0.0, 0.0), -0.599_473_818_2, 1e-9);
    close(ll(200.0, 38.0), 100.795_693_092_7, 1e-9);
}

#[test]
fn bg_nbd_on_cdnow_matches_the_paper_and_hardies_spreadsheet() {
    let fit = fitted(PurchaseModel::BgNbd);
    assert!(fit.converged, "{fit:?}");
    // Fader, Hardie & Lee (2005), section 5: r 0.243, alpha 4.414, a 0.793, b 2.426,
    // log-likelihood -9582.4.
    for (actual, expected) in fit.params.iter().zip([0.243, 4.414, 0.793, 2.426]) {
        close(*actual, expected, 5e-4);
    }
    close(fit.log_likelihood, -9582.4, 0.05);
    // Hardie's spreadsheet: a customer with x 2, t_x 30.43, T 38.86 makes 1.226 purchases
    // in the next 39 weeks; a new customer's cumulative purchases over time.
    let customer = History::new(2.0, 30.43, 38.86);
    close(fit.expected_purchases(39.0, &customer), 1.226, 1e-3);
    for (t, expected) in [
        (0.1429, 0.0078),
        (1.0, 0.0532),
        (3.0, 0.1506),
        (31.8571, 1.0405),
        (32.0, 1.0437),
        (78.0, 1.8576),
    ] {
        close(fit.expected_purchases_new(t), expected, 5e-4);
    }
    // A customer without repeat purchases cannot have left under BG/NBD.
    assert_eq!(fit.p_alive(&History::new(0.0, 0.0, 1.0)), 1.0);
    for x in (0..100).step_by(10) {
        for t_x in (0..100).step_by(10) {
            let p = fit.p_alive(&History::new(x as f64, t_x as f64, 100.0));
            assert!((0.0..=1.0).contains(&p), "{x} {t_x}: {p}");
        }
    }
}

#[test]
fn mbg_nbd_on_cdnow_matches_btydplus() {
    let fit = fitted(PurchaseModel::MbgNbd);
    assert!(fit.converged, "{fit:?}");
    // BTYDplus (as lifetimes' tests quote it): r 0.525, alpha 6.183, a 0.891, b 1.614.
    for (actual, expected) in fit.params.iter().zip([0.525, 6.183, 0.891, 1.614]) {
        close(*actual, expected, 5e-4);
    }
    let customer = History::new(2.0, 30.43, 38.86);
    close(fit.expected_purchases(39.0, &customer), 1.226, 0.05);
    // MBG/NBD lets a customer leave right after the first purchase.
    assert!(fit.p_alive(&History::new(0.0, 0.0, 38.86)) < 1.0);
}

#[test]
fn pareto_nbd_on_cdnow_matches_the_papers_and_btyd() {
    let fit = fitted(PurchaseModel::ParetoNbd);
    assert!(fit.converged, "{fit:?}");
    // Fader, Hardie & Lee (2005, "RFM and CLV") and BTYD's walkthrough: r 0.553,
    // alpha 10.578, s 0.606, beta 11.669, log-likelihood -9595.0.
    for (actual, expected) in fit.params.iter().zip([0.553, 10.578, 0.606, 11.669]) {
        close(*actual, expected, 0.005 * expected);
    }
    close(fit.log_likelihood, -9595.0, 0.05);
    // BTYD's walkthrough: 25.46 purchases in 52 weeks for x 26, t_x 30.86, T 31.
    close(
        fit.expected_purchases(52.0, &History::new(26.0, 30.86, 31.0)),
        25.46,
        0.01,
    );
    // BTYD's manual gives a new customer's purchases from its own fit; the parameters
    // differ in the third digit, so the expectations agree to 2e-3 (lifetimes: 1e-2).
    let btyd = [0.0, 0.050_778, 0.099_161, 0.145_425, 0.189_799, 0.232_475];
    for (t, expected) in btyd.iter().enumerate() {
        close(fit.expected_purchases_new(t as f64), *expected, 2e-3);
    }
    // BTYD's walkthrough, page 8, with its parameters.
    let walkthrough = PurchaseFit {
        params: [0.5534, 10.5802, 0.6061, 11.6562],
        ..fit.clone()
    };
    close(
        walkthrough.p_alive(&History::new(26.0, 30.86, 31.0)),
        0.9979,
        1e-3,
    );
}

#[test]
fn pareto_nbd_stays_finite_where_lifetimes_once_overflowed() {
    let fit = PurchaseFit {
        model: PurchaseModel::ParetoNbd,
        params: [10.465, 7.985_651_81e-3, 3.0516, 2.820],
        log_likelihood: 0.0,
        iterations: None,
        evaluations: 0,
        converged: true,
    };
    for (x, t_x, t) in [(40.0, 5.0, 6.0), (50.0, 1.0, 37.0), (50.0, 4.0, 37.0)] {
        let history = History::new(x, t_x, t);
        let ll = PurchaseModel::ParetoNbd.log_likelihood(&fit.params, &history);
        assert!(ll.is_finite(), "{ll}");
        let p = fit.p_alive(&history);
        assert!((0.0..=1.0).contains(&p), "{p}");
    }
    // A small change of history, a small change of expectation (lifetimes' underflow case).
    let cdnow = PurchaseFit {
        params: [0.55, 10.58, 0.61, 11.67],
        ..fit
    };
    let left = cdnow.expected_purchases(10.0, &History::new(132.0, 200.0, 200.0));
    let right = cdnow.expected_purchases(10.0, &History::new(133.0, 200.0, 200.0));
    assert!((left - right).abs() < 0.05, "{left} {right}");
}

#[test]
fn gamma_gamma_on_cdnow_matches_hardies_note() {
    let spends = cdnow().spends;
    let fit = spend::fit(&spends, 0.0).unwrap();
    assert!(fit.converged, "{fit:?}");
    // Fader & Hardie, note 025: p 6.25, q 3.74, gamma 15.44 (two decimals); scipy's
    // BFGS on the same log-likelihood: 6.248803, 3.744588, 15.447746, log-likelihood
    // -4055.923244.
    for (actual, expected) in fit.params.iter().zip([6.25, 3.74, 15.44]) {
        close(*actual, expected, 0.01);
    }
    for (actual, expected) in fit.params.iter().zip([6.248_803, 3.744_588, 15.447_746]) {
        close(*actual, expected, 2e-5 * expected);
    }
    close(fit.log_likelihood, -4_055.923_244, 1e-5);
    assert_eq!(fit.customers, 946);
    // Note 025's spreadsheet: the expected spend of the first ten customers.
    let published = SpendFit {
        params: [6.25, 3.74, 15.44],
        ..fit
    };
    let expected = [
        24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17,
    ];
    for (spend, expected) in spends.iter().zip(expected) {
        close(published.expected_spend(spend), expected, 0.1);
    }
}

#[test]
fn gamma_gamma_on_many_customers_starts_from_a_sample_and_ends_at_the_same_optimum() {
    // CDNOW's 946 repeat customers, 120 times over: every customer's likelihood counts the
    // same, so the maximum is the one on CDNOW alone, reached here from the fit on a sample.
    let spends = cdnow().spends;
    let many: Vec<Spend> = (0..120).flat_map(|_| spends.iter().copied()).collect();
    let fit = spend::fit(&many, 0.0).unwrap();
    assert!(fit.converged, "{fit:?}");
    assert_eq!(fit.customers, 946 * 120);
    for (actual, expected) in fit.params.iter().zip([6.248_803, 3.744_588, 15.447_746]) {
        close(*actual, expected, 2e-5 * expected);
    }
    close(fit.log_likelihood, 120.0 * -4_055.923_244, 120.0 * 1e-5);
}

#[test]
fn purchase_models_on_many_customers_start_from_a_sample_and_end_at_the_same_optimum() {
    // CDNOW's 2,357 customers, 120 times over, as with Gamma-Gamma above.
    let histories = cdnow().histories;
    let many: Vec<History> = (0..120).flat_map(|_| histories.iter().copied()).collect();
    let (patterns, _) = Patterns::of(&many);
    for model in [PurchaseModel::BgNbd, PurchaseModel::MbgNbd] {
        let once = fitted(model);
        let fit = model.fit(&patterns, 0.0).unwrap();
        assert!(fit.converged, "{fit:?}");
        for (actual, expected) in fit.params.iter().zip(once.params) {
            close(*actual, expected, 1e-5 * expected);
        }
        close(
            fit.log_likelihood,
            120.0 * once.log_likelihood,
            1e-9 * fit.log_likelihood.abs(),
        );
    }
}

#[test]
fn clv_discounts_each_months_expected_purchases() {
    let fit = fitted(PurchaseModel::BgNbd);
    let customer = History::new(2.0, 30.43, 38.86);
    let months = clv::monthly_purchases(&fit, &customer, 12, 4.345);
    // The months add up to the cumulative expectation over the horizon.
    close(
        months.iter().sum::<f64>(),
        fit.expected_purchases(12.0 * 4.345, &customer),
        1e-12,
    );
    let value = clv::clv(&months, 25.0, 0.01);
    let undiscounted: f64 = months.iter().map(|m| 25.0 * m).sum();
    assert!(
        value > 0.0 && value < undiscounted,
        "{value} {undiscounted}"
    );
    close(clv::clv(&months, 25.0, 0.0), undiscounted, 1e-9);
}

#[test]
fn the_likelihood_is_the_same_on_any_number_of_threads() {
    let (patterns, _) = Patterns::of(&cdnow().histories);
    let params = [0.243, 4.414, 0.793, 2.426];
    let on = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| PurchaseModel::ParetoNbd.total_log_likelihood(&params, &patterns))
    };
    assert_eq!(on(1).to_bits(), on(3).to_bits());
}

#[test]
fn data_without_repeat_purchases_cannot_be_fitted() {
    let (patterns, _) = Patterns::of(&[History::new(0.0, 0.0, 10.0)]);
    assert_eq!(
        PurchaseModel::BgNbd.fit(&patterns, 0.0),
        Err(ValueError::NoRepeatCustomers)
    );
    let one_offs = [Spend {
        frequency: 0.0,
        monetary_value: 10.0,
    }];
    assert_eq!(
        spend::fit(&one_offs, 0.0),
        Err(ValueError::NoRepeatCustomers)
    );
}

#[test]
fn the_chance_of_being_active_later_is_the_posterior_expectation_of_surviving() {
    let fit = fitted(PurchaseModel::BgNbd);
    let [r, alpha, a, b] = fit.params;
    let customer = History::new(3.0, 20.0, 38.86);
    assert_eq!(fit.p_alive_after(0.0, &customer), fit.p_alive(&customer));
    // E over p ~ Beta(a, b + x) of (1 + t p / (alpha + T))^-(r + x), by the midpoint rule
    // on a substitution that tames the density's pole at p = 0.
    let (x, big_t) = (customer.frequency, customer.age);
    let ln_beta = crate::special::ln_gamma(a) + crate::special::ln_gamma(b + x)
        - crate::special::ln_gamma(a + b + x);
    let surviving = |t: f64| {
        let steps = 200_000;
        (0..steps)
            .map(|i| {
                // p = u^(1/a): dp = u^(1/a - 1) / a du, which cancels p^(a - 1).
                let u = (i as f64 + 0.5) / steps as f64;
                let p = u.powf(1.0 / a);
                let weight = (1.0 - p).powf(b + x - 1.0) / a / ln_beta.exp();
                weight * (1.0 + t * p / (alpha + big_t)).powf(-(r + x)) / steps as f64
            })
            .sum::<f64>()
    };
    let mut before = fit.p_alive(&customer);
    for t in [4.345, 26.0, 52.0, 520.0] {
        let later = fit.p_alive_after(t, &customer);
        close(later, fit.p_alive(&customer) * surviving(t), 1e-6);
        assert!(later < before, "{t}: {later} {before}");
        before = later;
    }
    // Pareto/NBD: the dropout rate's posterior is Gamma(s, beta + T).
    let pareto = fitted(PurchaseModel::ParetoNbd);
    let [_, _, s, beta] = pareto.params;
    close(
        pareto.p_alive_after(52.0, &customer),
        pareto.p_alive(&customer) * ((beta + big_t) / (beta + big_t + 52.0)).powf(s),
        1e-12,
    );
}

#[test]
fn forecasts_are_each_customers_expectations_bit_for_bit() {
    // The forecast sums 2F1 at all times side by side; it must give what the per-customer
    // formulas give alone, for every model, at the months' ends and a later period.
    let histories = [
        History::new(0.0, 0.0, 38.9),
        History::new(2.0, 30.4, 38.9),
        History::new(2.0, 10.0, 31.0),
        History::new(45.0, 37.0, 39.0),
        History::new(900.0, 51.0, 52.0),
    ];
    let (patterns, _) = Patterns::of(&histories);
    let times = [0.0, 4.35, 8.7, 26.1, 52.2, 26.0];
    for (model, params) in [
        (PurchaseModel::BgNbd, [0.243, 4.414, 0.793, 2.426]),
        (PurchaseModel::MbgNbd, [0.525, 6.183, 0.891, 1.614]),
        (PurchaseModel::ParetoNbd, [0.553, 10.58, 0.606, 11.67]),
    ] {
        let fit = PurchaseFit {
            model,
            params,
            log_likelihood: 0.0,
            iterations: None,
            evaluations: 0,
            converged: true,
        };
        for (history, forecast) in patterns
            .histories
            .iter()
            .zip(fit.forecast(&patterns, &times))
        {
            assert_eq!(forecast.p_alive.to_bits(), fit.p_alive(history).to_bits());
            for (k, &t) in times.iter().enumerate() {
                assert_eq!(
                    forecast.purchases[k].to_bits(),
                    fit.expected_purchases(t, history).to_bits(),
                    "{model:?} {history:?} t {t}"
                );
                assert_eq!(
                    forecast.alive[k].to_bits(),
                    fit.p_alive_after(t, history).to_bits(),
                    "{model:?} {history:?} t {t}"
                );
            }
        }
    }
}
