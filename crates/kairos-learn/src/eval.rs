//! Leave-last-out evaluation of activity models against baselines.
//!
//! Each customer with enough history has their last activity held out; every
//! model predicts its local hour of week from everything else (models with
//! hyper-parameters tune them on a second, inner held-out split of the
//! training data only). Reported per model: mean negative log-likelihood of
//! the held-out hour, hit rate at 1/3/5/10/24 (the hour is among the k most
//! likely) and mean reciprocal rank.

use kairos_core::HOURS_PER_WEEK;
use serde::Serialize;

use crate::activity::{smooth64, ActivityParams};
use crate::fit::{fit_activity, fit_population, ActivityHistory, FitOptions, Split};
use crate::Result;

const H: usize = HOURS_PER_WEEK;
pub const HIT_RANKS: [usize; 5] = [1, 3, 5, 10, 24];

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub name: String,
    pub customers: usize,
    /// `None` for point predictors, which have no likelihood.
    pub nll: Option<f64>,
    pub hit_rate: [f64; 5],
    pub mrr: f64,
}

/// Rank (1 = most likely) of `h` in `p`; ties share the mean rank.
pub fn rank_of(p: &[f64], h: usize) -> f64 {
    let target = p[h];
    let above = p.iter().filter(|&&v| v > target).count();
    let ties = p.iter().filter(|&&v| v == target).count();
    above as f64 + (ties as f64 + 1.0) / 2.0
}

#[derive(Debug, Default)]
struct Acc {
    n: usize,
    nll: f64,
    hits: [f64; 5],
    rr: f64,
}

impl Acc {
    fn add(&mut self, p: &[f64], h: usize, likelihood: bool) {
        self.n += 1;
        if likelihood {
            self.nll -= p[h].ln();
        }
        let r = rank_of(p, h);
        for (hit, k) in self.hits.iter_mut().zip(HIT_RANKS) {
            if r <= k as f64 {
                *hit += 1.0;
            }
        }
        self.rr += 1.0 / r;
    }

    fn finish(self, name: &str, likelihood: bool) -> Metrics {
        let n = self.n.max(1) as f64;
        Metrics {
            name: name.into(),
            customers: self.n,
            nll: likelihood.then(|| self.nll / n),
            hit_rate: self.hits.map(|h| h / n),
            mrr: self.rr / n,
        }
    }
}

/// The shrunk histogram baseline: `(K_σ ⊛ c + α·pop) / (n + α)` with σ and α
/// tuned on an inner held-out split; no decay, segments or day sharing.
fn tune_shrunk(train: &[ActivityHistory]) -> (f64, f64, Vec<f64>) {
    let inner = Split::leave_last_out(train, 2);
    let (pop, _) = fit_population(&inner.train);
    let counts: Vec<Vec<f64>> = inner
        .held_out
        .iter()
        .map(|(i, _)| inner.train[*i].counts(1e5))
        .collect();
    let mut best = (f64::INFINITY, 1.0, 10.0);
    for sigma in [0.5, 0.75, 1.0, 1.5, 2.0, 3.0] {
        let smoothed: Vec<Vec<f64>> = counts.iter().map(|c| smooth64(c, sigma)).collect();
        for alpha in [1.0, 2.0, 3.0, 5.0, 8.0, 12.0, 20.0, 35.0] {
            let mut nll = 0.0;
            for (s, (_, obs)) in smoothed.iter().zip(&inner.held_out) {
                let n: f64 = s.iter().sum();
                let h = obs.how as usize;
                nll -= ((s[h] + alpha * pop[h]) / (n + alpha)).ln();
            }
            if nll < best.0 {
                best = (nll, sigma, alpha);
            }
        }
    }
    let (pop, _) = fit_population(train);
    (best.1, best.2, pop)
}

/// Evaluates Kairos and the baselines on `histories`, holding out the last
/// activity of every customer with at least `min_events`. `progress` is
/// called with (done, total) while Kairos's posteriors are computed.
pub fn evaluate(
    histories: &[ActivityHistory],
    min_events: usize,
    opts: &FitOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Vec<Metrics>, ActivityParams)> {
    let split = Split::leave_last_out(histories, min_events);
    let (model, _report) = fit_activity(&split.train, opts)?;
    let (sigma, alpha, pop) = tune_shrunk(&split.train);
    let uniform = vec![1.0 / H as f64; H];

    let mut acc: Vec<(&str, bool, Acc)> = vec![
        ("uniform", true, Acc::default()),
        ("population", true, Acc::default()),
        ("customer histogram (+0.1/hour)", true, Acc::default()),
        ("most frequent hour", false, Acc::default()),
        ("shrunk histogram (tuned)", true, Acc::default()),
        ("kairos", true, Acc::default()),
    ];
    let total = split.held_out.len();
    for (done, (i, obs)) in split.held_out.iter().enumerate() {
        let h = obs.how as usize;
        let train = &split.train[*i];
        let raw = train.counts(1e5);
        let n: f64 = raw.iter().sum();
        let hist: Vec<f64> = raw
            .iter()
            .map(|c| (c + 0.1) / (n + 0.1 * H as f64))
            .collect();
        // The most frequent hour ranks hours by count, the population breaking ties.
        let mode: Vec<f64> = raw.iter().zip(&pop).map(|(c, p)| c + p * 1e-6).collect();
        let s = smooth64(&raw, sigma);
        let shrunk: Vec<f64> = s
            .iter()
            .zip(&pop)
            .map(|(s, p)| (s + alpha * p) / (n + alpha))
            .collect();
        let kairos = model
            .posterior64(&train.counts(model.params.half_life_days))
            .hour_of_week;
        for ((_, lik, a), p) in acc
            .iter_mut()
            .zip([&uniform, &pop, &hist, &mode, &shrunk, &kairos])
        {
            a.add(p, h, *lik);
        }
        if done % 256 == 0 || done + 1 == total {
            progress(done + 1, total);
        }
    }
    let rows = acc
        .into_iter()
        .map(|(name, lik, a)| a.finish(name, lik))
        .collect();
    Ok((rows, model.params))
}

/// The metrics as a text table.
pub fn table(rows: &[Metrics]) -> String {
    let mut out = format!(
        "{:<32} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}\n",
        "model", "NLL", "HR@1", "HR@3", "HR@5", "HR@10", "HR@24", "MRR"
    );
    for r in rows {
        let nll = r.nll.map_or("-".to_string(), |v| format!("{v:.4}"));
        out.push_str(&format!(
            "{:<32} {:>9} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4}\n",
            r.name,
            nll,
            r.hit_rate[0],
            r.hit_rate[1],
            r.hit_rate[2],
            r.hit_rate[3],
            r.hit_rate[4],
            r.mrr
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_share_ties() {
        let p = [0.5, 0.2, 0.2, 0.1];
        assert_eq!(rank_of(&p, 0), 1.0);
        assert_eq!(rank_of(&p, 1), 2.5);
        assert_eq!(rank_of(&p, 3), 4.0);
        let flat = vec![1.0 / 168.0; 168];
        assert_eq!(rank_of(&flat, 7), 84.5);
    }
}
