//! The one place where domain errors become HTTP statuses and stable codes.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use kairos_core::{CoreError, FieldError};
use kairos_decide::DecideError;
use kairos_store::StoreError;
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `invalid_field`, `invalid_events`, `customer_not_found`, ...
    #[schema(value_type = String)]
    pub code: &'static str,
    pub message: String,
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<serde_json::Value>,
}

/// Every error answer: `{"error": {...}}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// An error answered to a client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<serde_json::Value>,
    /// Seconds to wait before retrying (503, 429).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn with_details(mut self, details: Vec<serde_json::Value>) -> Self {
        self.details = details;
        self
    }

    /// 400 listing each broken rule of each item: `{index, field, message}`.
    pub fn invalid_items(
        code: &'static str,
        message: String,
        items: Vec<(usize, Vec<FieldError>)>,
    ) -> Self {
        let details = items
            .into_iter()
            .flat_map(|(index, errs)| {
                errs.into_iter()
                    .map(move |e| json!({"index": index, "field": e.field, "message": e.message}))
            })
            .collect();
        Self::bad_request(code, message).with_details(details)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        resp.json(json!({"error": ErrorBody {
            code: self.code,
            message: self.message.clone(),
            details: self.details.clone(),
        }}))
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid { field, message } => {
                ApiError::bad_request("invalid_field", format!("{field}: {message}"))
                    .with_details(vec![json!({"field": field, "message": message})])
            }
            CoreError::InvalidEvent(errors) => ApiError::invalid_items(
                "invalid_event",
                "the event is invalid".into(),
                vec![(0, errors)],
            ),
            CoreError::UnknownTimeZone(name) => ApiError::bad_request(
                "unknown_timezone",
                format!("unknown time zone {name:?}: expected an IANA name such as \"Asia/Kuala_Lumpur\""),
            )
            .with_details(vec![json!({"field": "timezone", "message": "unknown IANA time zone"})]),
        }
    }
}

impl From<DecideError> for ApiError {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::InvalidWindow(m) => ApiError::bad_request("invalid_window", m),
            DecideError::InvalidParam { name, reason } => {
                ApiError::bad_request("invalid_field", format!("{name}: {reason}"))
                    .with_details(vec![json!({"field": name, "message": reason})])
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "store unavailable");
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store cannot serve this request now; nothing was changed, retry later",
                );
                err.retry_after = Some(2);
                err
            }
            StoreError::Corrupt(m) => {
                tracing::error!(error = %m, "stored data is damaged");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "stored data could not be read; the operator has been told in the logs",
                )
            }
        }
    }
}
