//! API keys and scopes. Keys are compared in constant time; the header is
//! never logged.

use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;

use crate::config::{ApiKey, Scope};
use crate::error::ApiError;
use crate::state::AppState;

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Allows the request if it carries a key with `scope` (admin implies every
/// scope). With no keys configured, only loopback clients are served.
pub fn authorize(req: &HttpRequest, state: &AppState, scope: Scope) -> Result<(), ApiError> {
    let keys = &state.config.raw.auth.keys;
    if keys.is_empty() {
        // `None` is an in-process request (tests), never a remote one.
        let local = req.peer_addr().is_none_or(|a| a.ip().is_loopback());
        return if local {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server has no API keys and serves only loopback clients",
            ))
        };
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
    let mut found: Option<&ApiKey> = None;
    for k in keys {
        // Compare against every key so timing does not reveal which matched.
        if constant_time_eq(k.key.as_bytes(), presented.as_bytes()) {
            found = Some(k);
        }
    }
    match found {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown API key",
        )),
        Some(k) if k.scopes.contains(&scope) || k.scopes.contains(&Scope::Admin) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this API key lacks the {scope:?} scope").to_lowercase(),
        )),
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
