#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot serve the request now (down, full, read-only);
    /// nothing was changed and the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back: a bug or a damaged store.
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn unavailable(e: impl std::fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }
    pub(crate) fn corrupt(e: impl std::fmt::Display) -> Self {
        Self::Corrupt(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
