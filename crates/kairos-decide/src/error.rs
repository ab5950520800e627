#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecideError {
    #[error("invalid decision parameter {name}: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    #[error("invalid window: {0}")]
    InvalidWindow(String),
}

pub type Result<T, E = DecideError> = std::result::Result<T, E>;
