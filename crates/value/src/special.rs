//! The special functions the models need: ln Γ (from `libm`, musl's implementation), its
//! derivative ψ (statrs's), and
//! the Gauss hypergeometric function 2F1, written here because no maintained Rust crate
//! has it for real arguments (statrs, puruspe and spfunc do not; GSL bindings would bring
//! a C library for one function). The models need it only for a, b, c with c > 0 and
//! 0 <= z < 1, where its power series converges.

/// ln Γ(x) for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

/// ψ(x) = d ln Γ(x) / dx for x > 0.
pub fn digamma(x: f64) -> f64 {
    statrs::function::gamma::digamma(x)
}

/// 1 / (1 + e^-x), the weight of the second of two terms whose logarithms differ by x.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// ln(e^a + e^b), without overflow.
pub fn log_add_exp(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let high = a.max(b);
    high + (-(a - b).abs()).exp().ln_1p()
}

/// ln(e^a - e^b) for a >= b.
pub fn log_sub_exp(a: f64, b: f64) -> f64 {
    if b == f64::NEG_INFINITY {
        return a;
    }
    a + (-(-(a - b)).exp_m1()).ln()
}

/// Terms a series may take before it is given up on: at z = 0.999 the series needs some
/// 40,000, so this leaves room up to z = 0.9998. Past it the models' arguments come from
/// parameters a fit only tries on its way (one rate thousands of times the other), where
/// a cost that cannot be computed sends the line search back; it bounds their time.
const MAX_TERMS: usize = 200_000;

/// ln 2F1(a, b; c; z) for c > 0, 0 <= z < 1 and a value that is positive (as it is for
/// the models' arguments); `None` when the series does not converge within
/// [`MAX_TERMS`] terms or the value is not positive.
///
/// Of the direct series and the one after Euler's transformation,
/// 2F1(a, b; c; z) = (1 - z)^(c - a - b) 2F1(c - a, c - b; c; z), the one whose terms grow
/// less is summed: for a customer with many purchases the direct series first grows over
/// hundreds of terms (past f64's range for thousands of purchases), the transformed one
/// shrinks at once. Terms are summed with a running scale, so neither overflows.
pub fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    debug_assert!(
        c > 0.0 && (0.0..1.0).contains(&z),
        "2F1({a}, {b}; {c}; {z})"
    );
    if z == 0.0 {
        return Some(0.0);
    }
    let direct_growth = (a * b / c).abs();
    let (ca, cb) = (c - a, c - b);
    let transformed_growth = (ca * cb / c).abs();
    if transformed_growth < direct_growth {
        let series = ln_series(ca, cb, c, z)?;
        Some(series + (c - a - b) * (-z).ln_1p())
    } else {
        ln_series(a, b, c, z)
    }
}

/// [`ln_hyp2f1`] at each of `zs` for one a, b and c: the same values, bit for bit, in a
/// fraction of the time. A forecast asks for 2F1 at a dozen times with the same a, b and
/// c; the series' coefficient ratios (a + n)(b + n) / ((c + n)(n + 1)), a division each,
/// are then computed once for all of them.
pub fn ln_hyp2f1_many(a: f64, b: f64, c: f64, zs: &[f64]) -> Vec<Option<f64>> {
    debug_assert!(c > 0.0 && zs.iter().all(|z| (0.0..1.0).contains(z)));
    let direct_growth = (a * b / c).abs();
    let (ca, cb) = (c - a, c - b);
    let transformed_growth = (ca * cb / c).abs();
    if transformed_growth < direct_growth {
        ln_series_many(ca, cb, c, zs)
            .into_iter()
            .zip(zs)
            .map(|(series, &z)| {
                if z == 0.0 {
                    return Some(0.0);
                }
                Some(series? + (c - a - b) * (-z).ln_1p())
            })
            .collect()
    } else {
        ln_series_many(a, b, c, zs)
            .into_iter()
            .zip(zs)
            .map(|(series, &z)| if z == 0.0 { Some(0.0) } else { series })
            .collect()
    }
}

/// Terms are added in blocks of this many before the sum is rescaled or judged converged:
/// the tests cost more than the terms, and a block of one z's terms is a plain chain of
/// multiply-adds. The few extra terms past convergence are below the last bit.
const BLOCK: usize = 8;

/// Rescaled below f64's range by enough that a block of growing terms cannot overflow (a
/// term grows at most by (a + n)(b + n) / ((c + n)(n + 1)), some thousands for the models'
/// arguments, whose larger series is the one not summed).
const RESCALE_ABOVE: f64 = 1e200;

/// ln of the power series Σ (a)_n (b)_n / ((c)_n n!) z^n, which must come out positive.
fn ln_series(a: f64, b: f64, c: f64, z: f64) -> Option<f64> {
    ln_series_many(a, b, c, &[z])[0]
}

/// [`ln_series`] at each of `zs`: the coefficient ratios are computed once per term for
/// all of them, and each z's sum stops where it would alone.
fn ln_series_many(a: f64, b: f64, c: f64, zs: &[f64]) -> Vec<Option<f64>> {
    // Per z: the running sum, the last term and the scale taken out of both.
    let mut sums = vec![1.0_f64; zs.len()];
    let mut terms = vec![1.0_f64; zs.len()];
    let mut ln_scales = vec![0.0_f64; zs.len()];
    let mut done: Vec<Option<Option<f64>>> = vec![None; zs.len()];
    let mut open = zs.len();
    let mut coefficients = [0.0_f64; BLOCK];
    for first in (0..MAX_TERMS).step_by(BLOCK) {
        if open == 0 {
            break;
        }
        for (offset, coefficient) in coefficients.iter_mut().enumerate() {
            let n = (first + offset) as f64;
            *coefficient = (a + n) * (b + n) / ((c + n) * (n + 1.0));
        }
        for (k, &z) in zs.iter().enumerate() {
            if done[k].is_some() {
                continue;
            }
            let (mut sum, mut term) = (sums[k], terms[k]);
            for coefficient in coefficients {
                term *= coefficient * z;
                sum += term;
            }
            if sum.abs() > RESCALE_ABOVE {
                sum /= RESCALE_ABOVE;
                term /= RESCALE_ABOVE;
                ln_scales[k] += RESCALE_ABOVE.ln();
            }
            (sums[k], terms[k]) = (sum, term);
            // Past the largest term (ratio < 1) the rest is bounded by a geometric series.
            let ratio = (coefficients[BLOCK - 1] * z).abs();
            let converged = ratio < 1.0 && term.abs() <= f64::EPSILON * sum.abs() * (1.0 - ratio);
            if converged || term == 0.0 || !sum.is_finite() {
                done[k] = Some((sum > 0.0 && sum.is_finite()).then(|| sum.ln() + ln_scales[k]));
                open -= 1;
            }
        }
    }
    done.into_iter().map(Option::flatten).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, relative: f64) {
        assert!(
            ((actual - expected) / expected).abs() <= relative,
            "{actual} is not {expected} within {relative:e}"
        );
    }

    #[test]
    fn ln_gamma_matches_known_values() {
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), 1e-15);
        close(ln_gamma(10.0), 362_880_f64.ln(), 1e-15);
        close(ln_gamma(171.5), 709.143_163_030_928_2, 1e-14);
    }

    #[test]
    fn hyp2f1_matches_closed_forms() {
        // 2F1(1, 1; 2; z) = -ln(1 - z) / z.
        for z in [0.01_f64, 0.3, 0.7, 0.95] {
            let expected = -(-z).ln_1p() / z;
            close(ln_hyp2f1(1.0, 1.0, 2.0, z).unwrap().exp(), expected, 1e-14);
        }
        // 2F1(a, b; b; z) = (1 - z)^-a.
        for (a, b, z) in [(0.3, 2.5, 0.4_f64), (7.0, 1.5, 0.9), (250.0, 3.0, 0.5)] {
            let expected = -a * (-z).ln_1p();
            close(ln_hyp2f1(a, b, b, z).unwrap(), expected, 1e-13);
        }
        // 2F1(1/2, 1/2; 3/2; z^2) = asin(z) / z.
        for z in [0.2_f64, 0.6, 0.9] {
            close(
                ln_hyp2f1(0.5, 0.5, 1.5, z * z).unwrap().exp(),
                z.asin() / z,
                1e-14,
            );
        }
    }

    #[test]
    fn hyp2f1_matches_mpmath_at_the_models_arguments() {
        // ln 2F1 from mpmath 1.3 at 40 digits (`mp.log(mp.hyp2f1(a, b, c, z))`), at
        // BG/NBD's conditional expectation with CDNOW's parameters (r 0.243, alpha 4.414,
        // a 0.793, b 2.426, T 38.86, t 39) for 0, 2, 200 and 5,000 purchases (where the
        // direct series would pass 1e308), at Pareto/NBD's likelihood, and near z = 1.
        let (r, alpha, a, b, big_t, t) = (0.243, 4.414, 0.793, 2.426, 38.86, 39.0);
        let z = t / (alpha + big_t + t);
        for (x, expected) in [
            (0.0, 0.174_164_404_629_849_04),
            (2.0, 1.520_675_745_009_022_6),
            (200.0, 128.788_794_005_634_87),
            (5000.0, 3_212.804_825_799_825_5),
        ] {
            let actual = ln_hyp2f1(r + x, b + x, a + b + x - 1.0, z).unwrap();
            close(actual, expected, 1e-13);
        }
        for (a, b, c, z, expected) in [
            (
                27.1595,
                26.5534,
                28.1595,
                0.025_308_000_244_612_654,
                0.656_475_301_492_707_8,
            ),
            (1.2, 1.7, 2.2, 0.999, 5.363_712_144_531_565),
            (134.16, 1.61, 135.16, 0.2, 0.356_292_942_569_128_7),
        ] {
            close(ln_hyp2f1(a, b, c, z).unwrap(), expected, 1e-12);
        }
    }

    #[test]
    fn hyp2f1_at_many_points_is_hyp2f1_at_each() {
        // The models' arguments (few and many purchases, where the direct series would
        // overflow), z from 0 to near 1, and an argument whose series does not converge.
        let (r, a, b) = (0.243, 0.793, 2.426);
        let zs = [0.0, 0.01, 0.25, 0.47, 0.5, 0.81, 0.95, 0.999, 0.999_99];
        for x in [0.0, 1.0, 2.0, 37.0, 200.0, 5000.0] {
            for (aa, bb, cc) in [
                (r + x, b + x, a + b + x - 1.0),
                (r + x, b + x, a + b + x),
                (1.2, 1.7 + x, 2.2),
            ] {
                let many = ln_hyp2f1_many(aa, bb, cc, &zs);
                for (&z, value) in zs.iter().zip(&many) {
                    let one = ln_hyp2f1(aa, bb, cc, z);
                    assert_eq!(
                        value.map(f64::to_bits),
                        one.map(f64::to_bits),
                        "2F1({aa}, {bb}; {cc}; {z}): {value:?} vs {one:?}"
                    );
                }
            }
        }
        assert!(ln_hyp2f1_many(1.0, 1.0, 2.0, &[]).is_empty());
    }

    #[test]
    fn digamma_matches_known_values() {
        // ψ(1) = -γ, ψ(1/2) = -γ - 2 ln 2, ψ(n + 1) = ψ(n) + 1/n; to 1e-14, ample for the
        // gradients it serves (a fit's optimum does not move with it).
        let euler = 0.577_215_664_901_532_9;
        close(digamma(1.0), -euler, 1e-14);
        close(digamma(0.5), -euler - 2.0 * 2f64.ln(), 1e-14);
        close(digamma(31.0), digamma(30.0) + 1.0 / 30.0, 1e-14);
        // mpmath's digamma(1234.5).
        close(digamma(1234.5), 7.118_016_231_827_998, 1e-14);
    }

    #[test]
    fn log_sums_do_not_overflow() {
        close(log_add_exp(1000.0, 1000.0), 1000.0 + 2f64.ln(), 1e-15);
        close(
            log_sub_exp(1000.0, 999.0),
            1000.0 + (1.0 - (-1f64).exp()).ln(),
            1e-15,
        );
        assert_eq!(log_add_exp(f64::NEG_INFINITY, 3.0), 3.0);
    }
}
