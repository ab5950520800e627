use std::fmt;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// A customer id: 1-256 bytes of UTF-8 without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerId(String);

impl CustomerId {
    pub const MAX_BYTES: usize = 256;

    pub fn parse(s: impl Into<String>) -> Result<Self, CoreError> {
        let s = s.into();
        if s.is_empty() || s.len() > Self::MAX_BYTES {
            return Err(CoreError::invalid(
                "customer_id",
                format!("must be 1-{} bytes, got {}", Self::MAX_BYTES, s.len()),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(CoreError::invalid(
                "customer_id",
                "must not contain control characters",
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomerId {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<CustomerId> for String {
    fn from(id: CustomerId) -> Self {
        id.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event id, the idempotency key of an event: 1-128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl EventId {
    pub const MAX_BYTES: usize = 128;

    pub fn parse(s: impl Into<String>) -> Result<Self, CoreError> {
        let s = s.into();
        if s.is_empty() || s.len() > Self::MAX_BYTES {
            return Err(CoreError::invalid(
                "event_id",
                format!("must be 1-{} bytes, got {}", Self::MAX_BYTES, s.len()),
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = CoreError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_id_rules() {
        assert!(CustomerId::parse("c-42").is_ok());
        assert!(CustomerId::parse("ü".repeat(128)).is_ok()); // 256 bytes
        assert!(CustomerId::parse("ü".repeat(128) + "x").is_err());
        assert!(CustomerId::parse("").is_err());
        assert!(CustomerId::parse("a\nb").is_err());
        assert!(CustomerId::parse("a\u{7f}b").is_err());
    }

    #[test]
    fn event_id_rules() {
        assert!(EventId::parse("e".repeat(128)).is_ok());
        assert!(EventId::parse("e".repeat(129)).is_err());
        assert!(EventId::parse("").is_err());
    }
}
