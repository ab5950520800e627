use std::fmt;

/// One rule an input broke: which field, and why, in a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CoreError {
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("invalid event: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidEvent(Vec<FieldError>),
    #[error("unknown time zone {0:?}: expected an IANA name such as \"Asia/Kuala_Lumpur\"")]
    UnknownTimeZone(String),
}

impl CoreError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The rules broken, each with its field (an unknown zone is the
    /// `timezone` field's).
    pub fn into_field_errors(self) -> Vec<FieldError> {
        match self {
            Self::Invalid { field, message } => vec![FieldError { field, message }],
            Self::InvalidEvent(errors) => errors,
            e @ Self::UnknownTimeZone(_) => vec![FieldError::new("timezone", e.to_string())],
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
