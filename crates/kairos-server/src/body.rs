//! Request bodies: size limits and content types, answered in the API's
//! error shape.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::config::ServerConfig;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Ndjson,
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body is larger than {limit} bytes"),
    )
}

/// The body's kind from its Content-Type; JSON when `ndjson` is not allowed.
pub fn content_kind(req: &HttpRequest, ndjson_allowed: bool) -> Result<BodyKind, ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match ct.as_deref() {
        Some("application/json") => Ok(BodyKind::Json),
        Some("application/x-ndjson") if ndjson_allowed => Ok(BodyKind::Ndjson),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {} is not accepted here: send application/json{}",
                other.map_or("(none)".to_string(), |s| format!("{s:?}")),
                if ndjson_allowed {
                    " or application/x-ndjson"
                } else {
                    ""
                }
            ),
        )),
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses a JSON body into `T`, naming the problem on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            "invalid_json"
        } else {
            "invalid_body"
        };
        ApiError::bad_request(code, format!("the request body is not valid: {e}"))
    })
}

/// Reads and parses a JSON request body of at most the configured size and depth.
pub async fn json_body<T: DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    server: &ServerConfig,
) -> Result<T, ApiError> {
    content_kind(req, false)?;
    let bytes = read_body(req, payload, server.max_body_bytes).await?;
    check_depth(&bytes, server.max_json_depth)?;
    parse_json(&bytes)
}

/// Refuses JSON (or NDJSON) nested deeper than `max` arrays and objects,
/// before any parsing: a cheap scan that skips strings.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), ApiError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ApiError::bad_request(
                        "too_deep",
                        format!("the request body nests JSON deeper than {max} levels"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The items of a request body of many (see [`items`]) under its size and
/// depth limits: at most `max`, or 400 `too_many_<key>`.
pub async fn item_body(
    req: &HttpRequest,
    payload: web::Payload,
    server: &ServerConfig,
    key: &'static str,
    too_many: &'static str,
    max: usize,
) -> Result<Vec<Result<serde_json::Value, String>>, ApiError> {
    let kind = content_kind(req, true)?;
    let bytes = read_body(req, payload, server.max_body_bytes).await?;
    check_depth(&bytes, server.max_json_depth)?;
    let values = items(kind, &bytes, key)?;
    if values.len() > max {
        return Err(ApiError::bad_request(
            too_many,
            format!(
                "{} {key} in one request; at most {max} are accepted",
                values.len()
            ),
        ));
    }
    Ok(values)
}

/// Splits a request body into one JSON value per item: the array under
/// `key` of a JSON object (`{"events": [...]}`), or one item a line of NDJSON
/// (an unparsable line stays in its place as the reason).
pub fn items(
    kind: BodyKind,
    bytes: &[u8],
    key: &str,
) -> Result<Vec<Result<serde_json::Value, String>>, ApiError> {
    use serde_json::Value;
    match kind {
        BodyKind::Json => {
            let body: Value = serde_json::from_slice(bytes).map_err(|e| {
                ApiError::bad_request(
                    "invalid_json",
                    format!("the request body is not valid JSON: {e}"),
                )
            })?;
            let shape = || {
                ApiError::bad_request(
                    "invalid_body",
                    format!("the body must be {{\"{key}\": [...]}}"),
                )
            };
            match body {
                Value::Object(mut map) => match map.remove(key) {
                    Some(Value::Array(items)) => Ok(items.into_iter().map(Ok).collect()),
                    _ => Err(shape()),
                },
                _ => Err(shape()),
            }
        }
        BodyKind::Ndjson => {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                ApiError::bad_request("invalid_body", "the NDJSON body is not UTF-8")
            })?;
            Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str::<Value>(l).map_err(|e| format!("not valid JSON: {e}"))
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert!(check_depth(br#"{"a": [1, {"b": 2}]}"#, 3).is_ok());
        assert!(check_depth(br#"{"a": [1, {"b": 2}]}"#, 2).is_err());
        assert!(check_depth(br#"{"a": "[[[[[[\"[[[["}"#, 1).is_ok());
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(
            check_depth(deep.as_bytes(), 32).err().map(|e| e.code),
            Some("too_deep")
        );
    }
}
