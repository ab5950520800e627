//! API keys and scopes. Keys are compared in constant time; the header is
//! never logged.

use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use sha2::Digest;

use crate::config::{Scope, ValidKey};
use crate::error::ApiError;
use crate::state::AppState;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Allows the request if it carries a key with `scope` (admin implies every
/// scope) and the key (or, without keys, the client address) is within its
/// rate. With no keys configured, only loopback clients are served.
pub fn authorize(req: &HttpRequest, state: &AppState, scope: Scope) -> Result<(), ApiError> {
    let keys = &state.config.keys;
    if keys.is_empty() {
        // `None` is an in-process request (tests), never a remote one.
        let peer = req.peer_addr();
        let local = peer.is_none_or(|a| a.ip().is_loopback());
        if !local {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server has no API keys and serves only loopback clients",
            ));
        }
        let rate = state.config.server().rate_limit_per_second;
        let who = peer.map_or_else(|| "in-process".to_owned(), |a| a.ip().to_string());
        return state.limiter.take(
            &who,
            rate,
            crate::config::burst(rate, state.config.server().rate_limit_burst),
            state,
        );
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing API key: send Authorization: Bearer <key>",
        ));
    };
    let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
    let mut found: Option<(usize, &ValidKey)> = None;
    for (i, k) in keys.iter().enumerate() {
        // Compare against every key so timing does not reveal which matched.
        if constant_time_eq(&k.sha256, &digest) {
            found = Some((i, k));
        }
    }
    match found {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown API key",
        )),
        Some((i, k)) if k.scopes.contains(&scope) || k.scopes.contains(&Scope::Admin) => state
            .limiter
            .take(&format!("key-{i}"), k.rate, k.burst, state),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this API key lacks the {scope:?} scope").to_lowercase(),
        )),
    }
}

/// Token buckets, one per API key (or client address): `rate` tokens a
/// second up to `burst`; a request takes one or is refused with 429 and
/// how long until the next token.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(_config: &crate::ValidConfig) -> Self {
        Self::default()
    }

    fn take(&self, who: &str, rate: f64, burst: f64, state: &AppState) -> Result<(), ApiError> {
        if rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = buckets.entry(who.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - *tokens) / rate).ceil().max(1.0);
        drop(buckets);
        state.metrics.rate_limited();
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("more than {rate} requests per second; retry after {wait} s"),
        );
        err.retry_after = Some(wait as u32);
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_keys() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
