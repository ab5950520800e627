#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LearnError {
    #[error("invalid learner parameter {name}: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    #[error("invalid model: {0}")]
    InvalidModel(String),
}

pub type Result<T, E = LearnError> = std::result::Result<T, E>;
