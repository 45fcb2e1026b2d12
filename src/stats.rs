//! Statistical tests for comparing two samples (the canary verdict): the Mann-Whitney U test
//! with its effect sizes for latencies, Fisher's exact test and a confidence interval for
//! failure proportions. Pure functions: no I/O, no clocks, no randomness.
//!
//! Conventions follow R's `wilcox.test(correct = TRUE)` / SciPy's `mannwhitneyu` and R's
//! `phyper` (Loader's saddle-point algorithm for the hypergeometric probabilities, accurate
//! for counts in the millions). The unit tests hold reference values computed with SciPy.

use serde::{Deserialize, Serialize};

/// Both samples at most this large and without ties: the exact distribution of U is used.
pub const EXACT_MAX_N: usize = 20;

/// The Mann-Whitney U test of a candidate sample against a baseline sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MannWhitney {
    /// Values compared (NaN and infinite values are left out).
    pub n_baseline: usize,
    pub n_candidate: usize,
    /// U of the candidate: pairs where the candidate's value is greater, ties counting half.
    pub u: f64,
    /// Normal statistic of the one-sided test, `(u − n_b·n_c/2 − 0.5) / σ` with the
    /// tie-corrected σ: positive when the candidate is slower; 0 when every value is equal.
    pub z: f64,
    /// One-sided p-value: the candidate is stochastically greater (slower).
    pub p_greater: f64,
    /// Two-sided p-value (SciPy's: twice the tail of the larger U, at most 1).
    pub p_two_sided: f64,
    /// Common-language effect size: P(candidate > baseline) + 0.5 P(tie) = `u / (n_b·n_c)`.
    pub effect: f64,
    /// Hodges-Lehmann estimate of the shift: the median of every pairwise difference
    /// candidate − baseline (the mean of the two middle ones for an even count), computed
    /// exactly for any size by a bisection over values, `O((n_b + n_c) · 64)` after sorting.
    pub hodges_lehmann_ms: f64,
    /// The p-values come from the exact distribution of U (both samples at most
    /// [`EXACT_MAX_N`], no ties), otherwise from the normal approximation with tie and
    /// continuity correction.
    #[serde(default)]
    pub exact: bool,
}

/// Compares `candidate` against `baseline` (e.g. latencies in ms). Values that are NaN or
/// infinite cannot be ranked meaningfully and are left out (the `n_*` fields say how many
/// were used); `None` when either side has no value left.
pub fn mann_whitney(baseline: &[f64], candidate: &[f64]) -> Option<MannWhitney> {
    let sorted = |v: &[f64]| {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (b, c) = (sorted(baseline), sorted(candidate));
    if b.is_empty() || c.is_empty() {
        return None;
    }
    let (nb, nc) = (b.len() as f64, c.len() as f64);
    let (rank_sum_c, ties) = rank_sum(&b, &c);
    let u = rank_sum_c - nc * (nc + 1.0) / 2.0;
    let pairs = nb * nc;
    let mu = pairs / 2.0;
    let n = nb + nc;
    let sigma = (pairs / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)))).sqrt();
    let z_of = |u: f64| {
        if sigma > 0.0 {
            (u - mu - 0.5) / sigma
        } else {
            0.0
        }
    };
    let u_max = u.max(pairs - u);
    let exact = b.len() <= EXACT_MAX_N && c.len() <= EXACT_MAX_N && ties == 0.0;
    let (p_greater, p_two_sided) = if exact {
        let dist = UDistribution::new(b.len(), c.len());
        (dist.sf(u), (2.0 * dist.sf(u_max)).min(1.0))
    } else if sigma > 0.0 {
        (normal_sf(z_of(u)), (2.0 * normal_sf(z_of(u_max))).min(1.0))
    } else {
        // Every value equal: no evidence either way.
        (1.0, 1.0)
    };
    Some(MannWhitney {
        n_baseline: b.len(),
        n_candidate: c.len(),
        u,
        z: z_of(u),
        p_greater,
        p_two_sided,
        effect: u / pairs,
        hodges_lehmann_ms: hodges_lehmann(&b, &c),
        exact,
    })
}

/// Rank sum of `c` in the pooled sample (average ranks for ties) and the tie term
/// `Σ (t³ − t)` over groups of equal values, by merging the two sorted samples.
fn rank_sum(b: &[f64], c: &[f64]) -> (f64, f64) {
    let (mut i, mut j) = (0, 0);
    let (mut before, mut sum_c, mut ties) = (0.0f64, 0.0f64, 0.0f64);
    while i < b.len() || j < c.len() {
        let v = match (b.get(i), c.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        let i0 = i;
        while i < b.len() && b[i] == v {
            i += 1;
        }
        let j0 = j;
        while j < c.len() && c[j] == v {
            j += 1;
        }
        let (tb, tc) = ((i - i0) as f64, (j - j0) as f64);
        let t = tb + tc;
        // Ranks before + 1 ..= before + t, averaged.
        sum_c += tc * (before + (t + 1.0) / 2.0);
        ties += t * t * t - t;
        before += t;
    }
    (sum_c, ties)
}

/// Upper tail of the standard normal distribution, accurate far into the tail.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The null distribution of U for samples of `m` and `n` values without ties: the number
/// of orderings giving each U is a coefficient of the Gaussian binomial `[m+n choose m]_q`,
/// the product over `i = 1..=m` of `(1 − q^(n+i)) / (1 − q^i)`, exact in integers.
struct UDistribution {
    counts: Vec<f64>,
    total: f64,
}

impl UDistribution {
    fn new(m: usize, n: usize) -> Self {
        let top = m * n + m + n;
        let mut p = vec![0i64; top + 1];
        p[0] = 1;
        for i in 1..=m {
            let a = n + i;
            for k in (a..=top).rev() {
                p[k] -= p[k - a];
            }
            for k in i..=top {
                p[k] += p[k - i];
            }
        }
        let counts: Vec<f64> = p[..=m * n].iter().map(|&x| x as f64).collect();
        let total = counts.iter().sum();
        UDistribution { counts, total }
    }

    /// P(U ≥ u).
    fn sf(&self, u: f64) -> f64 {
        let from = u.ceil().max(0.0) as usize;
        let tail: f64 = self.counts.iter().skip(from).sum();
        tail / self.total
    }
}

/// Median of the pairwise differences `c − b`, both sorted and non-empty.
fn hodges_lehmann(b: &[f64], c: &[f64]) -> f64 {
    let pairs = b.len() as u64 * c.len() as u64;
    if pairs % 2 == 1 {
        kth_difference(b, c, pairs.div_ceil(2))
    } else {
        (kth_difference(b, c, pairs / 2) + kth_difference(b, c, pairs / 2 + 1)) / 2.0
    }
}

/// The `k`-th smallest (1-based) of the differences `c − b`: the smallest value `t` with at
/// least `k` differences `≤ t`, found by bisection over the ordered bit patterns of f64
/// (at most 64 steps), each step counting with two pointers in `O(|b| + |c|)`.
fn kth_difference(b: &[f64], c: &[f64], k: u64) -> f64 {
    let count_le = |t: f64| -> u64 {
        let mut p = 0;
        let mut count = 0u64;
        for &cv in c {
            // `cv - b[p]` shrinks as p grows, and grows with cv: p only moves forward.
            while p < b.len() && cv - b[p] > t {
                p += 1;
            }
            count += (b.len() - p) as u64;
        }
        count
    };
    let (Some(&b_min), Some(&b_max), Some(&c_min), Some(&c_max)) =
        (b.first(), b.last(), c.first(), c.last())
    else {
        return f64::NAN;
    };
    let (mut lo, mut hi) = (order_key(c_min - b_max), order_key(c_max - b_min));
    while lo < hi {
        // Floor of the midpoint; the keys span more than i64 when they differ in sign.
        let mid = ((i128::from(lo) + i128::from(hi)) >> 1) as i64;
        if count_le(from_order_key(mid)) >= k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    from_order_key(lo)
}

/// Maps an f64 to an integer with the same order (`-0.0` just below `0.0`).
fn order_key(x: f64) -> i64 {
    let bits = x.to_bits() as i64;
    if bits < 0 {
        bits ^ i64::MAX
    } else {
        bits
    }
}

fn from_order_key(k: i64) -> f64 {
    f64::from_bits(if k < 0 { k ^ i64::MAX } else { k } as u64)
}

/// A comparison of two failure proportions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Proportions {
    /// Failures / requests; 0 without requests.
    pub baseline_rate: f64,
    pub candidate_rate: f64,
    /// `candidate_rate − baseline_rate`.
    pub difference: f64,
    /// 95% confidence interval of the difference: Newcombe's hybrid score interval (his
    /// method 10, from Wilson intervals, no continuity correction), which stays inside
    /// [−1, 1] and behaves for rates near 0, unlike the Wald interval.
    pub ci95: (f64, f64),
    /// Pooled two-proportion z statistic, positive when the candidate fails more; 0 when it
    /// is undefined (no request, or no failure and no success at all).
    pub z: f64,
    /// One-sided p-value that the candidate's proportion is greater: Fisher's exact test.
    pub p_greater: f64,
}

/// One-sided Fisher exact p-value that the candidate's failure proportion is greater: for the
/// table `[[fail_c, n_c − fail_c], [fail_b, n_b − fail_b]]`, the probability under the
/// hypergeometric distribution of `fail_c` or more failures among the candidate's requests
/// (SciPy's `fisher_exact(table, alternative='greater')`). 1 when there is nothing to compare;
/// NaN for an impossible table (more failures than requests).
pub fn fisher_exact_greater(fail_b: u64, n_b: u64, fail_c: u64, n_c: u64) -> f64 {
    if fail_b > n_b || fail_c > n_c {
        return f64::NAN;
    }
    if fail_c == 0 {
        return 1.0;
    }
    let failures = (fail_b + fail_c) as f64;
    let successes = (n_b + n_c) as f64 - failures;
    phyper_upper(fail_c as f64, failures, successes, n_c as f64)
}

/// Compares the candidate's failure proportion with the baseline's.
pub fn compare_proportions(fail_b: u64, n_b: u64, fail_c: u64, n_c: u64) -> Proportions {
    let rate = |f: u64, n: u64| if n > 0 { f as f64 / n as f64 } else { 0.0 };
    let (pb, pc) = (rate(fail_b, n_b), rate(fail_c, n_c));
    let (lb, ub) = wilson(fail_b, n_b);
    let (lc, uc) = wilson(fail_c, n_c);
    let d = pc - pb;
    let ci95 = (
        d - ((pc - lc).powi(2) + (ub - pb).powi(2)).sqrt(),
        d + ((uc - pc).powi(2) + (pb - lb).powi(2)).sqrt(),
    );
    let pooled = rate(fail_b + fail_c, n_b + n_c);
    let se = if n_b > 0 && n_c > 0 {
        (pooled * (1.0 - pooled) * (1.0 / n_b as f64 + 1.0 / n_c as f64)).sqrt()
    } else {
        0.0
    };
    Proportions {
        baseline_rate: pb,
        candidate_rate: pc,
        difference: d,
        ci95,
        z: if se > 0.0 { d / se } else { 0.0 },
        p_greater: fisher_exact_greater(fail_b, n_b, fail_c, n_c),
    }
}

/// 97.5% quantile of the standard normal distribution.
const Z975: f64 = 1.959_963_984_540_054;

/// Wilson score interval (95%) of `x / n`; [0, 1] without data.
fn wilson(x: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (x, n, z2) = (x as f64, n as f64, Z975 * Z975);
    let centre = (x + z2 / 2.0) / (n + z2);
    let half = Z975 * (x * (n - x) / n + z2 / 4.0).sqrt() / (n + z2);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// `ln n! − ln(√(2πn) (n/e)^n)`, the error of Stirling's formula (Loader 2000).
fn stirlerr(n: f64) -> f64 {
    const S0: f64 = 1.0 / 12.0;
    const S1: f64 = 1.0 / 360.0;
    const S2: f64 = 1.0 / 1260.0;
    const S3: f64 = 1.0 / 1680.0;
    const S4: f64 = 1.0 / 1188.0;
    if n <= 15.0 {
        return libm::lgamma(n + 1.0) - (n + 0.5) * n.ln() + n - LN_SQRT_2PI;
    }
    let nn = n * n;
    if n > 500.0 {
        (S0 - S1 / nn) / n
    } else if n > 80.0 {
        (S0 - (S1 - S2 / nn) / nn) / n
    } else if n > 35.0 {
        (S0 - (S1 - (S2 - S3 / nn) / nn) / nn) / n
    } else {
        (S0 - (S1 - (S2 - (S3 - S4 / nn) / nn) / nn) / nn) / n
    }
}

/// The deviance term `x ln(x/np) + np − x`, without cancellation when `x ≈ np` (Loader).
fn bd0(x: f64, np: f64) -> f64 {
    if (x - np).abs() < 0.1 * (x + np) {
        let mut v = (x - np) / (x + np);
        let mut s = (x - np) * v;
        if s.abs() < f64::MIN_POSITIVE {
            return s;
        }
        let mut ej = 2.0 * x * v;
        v *= v;
        for j in 1..1000 {
            ej *= v;
            let s1 = s + ej / f64::from(2 * j + 1);
            if s1 == s {
                return s1;
            }
            s = s1;
        }
    }
    x * (x / np).ln() + np - x
}

/// ln of the binomial probability of `x` in `n` with success probability `p` (`q = 1 − p`).
fn ln_dbinom(x: f64, n: f64, p: f64, q: f64) -> f64 {
    if p == 0.0 {
        return if x == 0.0 { 0.0 } else { f64::NEG_INFINITY };
    }
    if q == 0.0 {
        return if x == n { 0.0 } else { f64::NEG_INFINITY };
    }
    if x == 0.0 {
        if n == 0.0 {
            return 0.0;
        }
        return if p < 0.1 {
            -bd0(n, n * q) - n * p
        } else {
            n * q.ln()
        };
    }
    if x == n {
        return if q < 0.1 {
            -bd0(n, n * p) - n * q
        } else {
            n * p.ln()
        };
    }
    if x < 0.0 || x > n {
        return f64::NEG_INFINITY;
    }
    let lc = stirlerr(n) - stirlerr(x) - stirlerr(n - x) - bd0(x, n * p) - bd0(n - x, n * q);
    let lf = LN_2PI + x.ln() + (-x / n).ln_1p();
    lc - 0.5 * lf
}

/// ln P(X = x) for X hypergeometric: `n` drawn from `r` red and `b` black, `x` red.
fn ln_dhyper(x: f64, r: f64, b: f64, n: f64) -> f64 {
    if x < 0.0 || n < x || r < x || n - x > b {
        return f64::NEG_INFINITY;
    }
    if n == 0.0 {
        return if x == 0.0 { 0.0 } else { f64::NEG_INFINITY };
    }
    let p = n / (r + b);
    let q = (r + b - n) / (r + b);
    ln_dbinom(x, r, p, q) + ln_dbinom(n - x, b, p, q) - ln_dbinom(n, r + b, p, q)
}

/// `P(X ≤ x) / P(X = x)`, summed downwards from `x` (which must lie in the lower part of the
/// distribution, so that the terms shrink).
fn pdhyper(mut x: f64, r: f64, b: f64, n: f64) -> f64 {
    let (mut sum, mut term) = (0.0f64, 1.0f64);
    while x > 0.0 && term >= f64::EPSILON * sum {
        term *= x * (b - n + x) / (n + 1.0 - x) / (r + 1.0 - x);
        sum += term;
        x -= 1.0;
    }
    1.0 + sum
}

/// P(X ≥ x) for X hypergeometric (`n` drawn from `r` red and `b` black), as R's
/// `phyper(x - 1, r, b, n, lower.tail = FALSE)`: always sums the tail whose terms shrink,
/// and takes the complement when that is the other tail.
fn phyper_upper(x: f64, r: f64, b: f64, n: f64) -> f64 {
    // P(X > y) with y = x − 1.
    let (mut x, mut r, mut b, mut lower) = (x - 1.0, r, b, false);
    if x * (r + b) > n * r {
        std::mem::swap(&mut r, &mut b);
        x = n - x - 1.0;
        lower = !lower;
    }
    let tail = |below: f64| if lower { below } else { 0.5 - below + 0.5 };
    if x < 0.0 || x < n - b {
        return tail(0.0);
    }
    if x >= r || x >= n {
        return tail(1.0);
    }
    let d = ln_dhyper(x, r, b, n).exp();
    tail(d * pdhyper(x, r, b, n))
}

#[cfg(test)]
mod tests;
