//! Customer attributes as set by clients, and their merge rules.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Channel, CoreError, CustomerId};

/// What the client said about a channel for this customer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPrefs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<bool>,
    /// When consent was last set; a later unsubscribe overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub customer_id: CustomerId,
    /// IANA zone name; `None` until the client sets one.
    pub timezone: Option<String>,
    pub locale: Option<String>,
    pub channels: BTreeMap<Channel, ChannelPrefs>,
    pub traits: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partial update: present fields replace, `traits` merge key by key
/// (a `null` trait removes it), channels merge field by field.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    pub timezone: Option<String>,
    pub locale: Option<String>,
    pub channels: Option<BTreeMap<Channel, ChannelPrefsPatch>>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub traits: Option<serde_json::Map<String, serde_json::Value>>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPrefsPatch {
    pub reachable: Option<bool>,
    pub consent: Option<bool>,
}

/// Largest `traits` object, serialized.
pub const MAX_TRAITS_BYTES: usize = 16 * 1024;

impl CustomerPatch {
    /// Checks the patch on its own (time zone name, locale, sizes).
    pub fn validate(&self) -> Result<(), CoreError> {
        if let Some(tz) = &self.timezone {
            crate::time::parse_tz(tz)?;
        }
        if let Some(locale) = &self.locale {
            let ok = !locale.is_empty()
                && locale.len() <= 35
                && locale
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(CoreError::invalid(
                    "locale",
                    format!("{locale:?} is not a BCP 47 language tag such as \"en-MY\""),
                ));
            }
        }
        if let Some(traits) = &self.traits {
            let size = serde_json::to_vec(traits)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_TRAITS_BYTES {
                return Err(CoreError::invalid(
                    "traits",
                    format!("is {size} bytes; at most {MAX_TRAITS_BYTES} are allowed"),
                ));
            }
        }
        Ok(())
    }

    /// Applies the patch to `current` (or a new customer) at `now`.
    pub fn apply(self, id: CustomerId, current: Option<Customer>, now: DateTime<Utc>) -> Customer {
        let mut c = current.unwrap_or_else(|| Customer {
            customer_id: id,
            timezone: None,
            locale: None,
            channels: BTreeMap::new(),
            traits: serde_json::Map::new(),
            created_at: now,
            updated_at: now,
        });
        if let Some(tz) = self.timezone {
            c.timezone = Some(tz);
        }
        if let Some(locale) = self.locale {
            c.locale = Some(locale);
        }
        for (channel, patch) in self.channels.unwrap_or_default() {
            let prefs = c.channels.entry(channel).or_default();
            if let Some(r) = patch.reachable {
                prefs.reachable = Some(r);
            }
            if let Some(consent) = patch.consent {
                prefs.consent = Some(consent);
                prefs.consent_updated_at = Some(now);
            }
        }
        for (k, v) in self.traits.unwrap_or_default() {
            if v.is_null() {
                c.traits.remove(&k);
            } else {
                c.traits.insert(k, v);
            }
        }
        c.updated_at = now;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges() {
        let id = CustomerId::parse("c").unwrap_or_else(|e| panic!("{e}"));
        let t0 = DateTime::from_timestamp(0, 0).unwrap_or_default();
        let t1 = DateTime::from_timestamp(60, 0).unwrap_or_default();
        let first: CustomerPatch = serde_json::from_value(json!({
            "timezone": "Asia/Kuala_Lumpur",
            "channels": {"push": {"reachable": true, "consent": true}},
            "traits": {"plan": "gold", "age": 40}
        }))
        .unwrap_or_default();
        let c = first.apply(id.clone(), None, t0);
        let second: CustomerPatch = serde_json::from_value(json!({
            "channels": {"push": {"consent": false}, "email": {"reachable": true}},
            "traits": {"age": null, "city": "PJ"}
        }))
        .unwrap_or_default();
        let c = second.apply(id, Some(c), t1);
        assert_eq!(c.timezone.as_deref(), Some("Asia/Kuala_Lumpur"));
        assert_eq!(c.channels[&Channel::Push].reachable, Some(true));
        assert_eq!(c.channels[&Channel::Push].consent, Some(false));
        assert_eq!(c.channels[&Channel::Push].consent_updated_at, Some(t1));
        assert_eq!(c.channels[&Channel::Email].consent, None);
        assert_eq!(
            serde_json::Value::Object(c.traits),
            json!({"plan": "gold", "city": "PJ"})
        );
        assert_eq!((c.created_at, c.updated_at), (t0, t1));
    }

    #[test]
    fn validates() {
        let bad_tz = CustomerPatch {
            timezone: Some("Mars/Olympus".into()),
            ..Default::default()
        };
        assert!(bad_tz.validate().is_err());
        let bad_locale = CustomerPatch {
            locale: Some("en MY".into()),
            ..Default::default()
        };
        assert!(bad_locale.validate().is_err());
        assert!(serde_json::from_value::<CustomerPatch>(json!({"timezone": 3})).is_err());
        assert!(serde_json::from_value::<CustomerPatch>(json!({"channels": {"fax": {}}})).is_err());
        assert!(serde_json::from_value::<CustomerPatch>(json!({"tz": "UTC"})).is_err());
    }
}
