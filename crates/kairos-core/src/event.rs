use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::{Channel, CoreError, CustomerId, EventId, FieldError};

/// Largest `properties` object accepted, serialized as JSON.
pub const MAX_PROPERTIES_BYTES: usize = 4 * 1024;
/// Largest free-form short string (message id, category, ...).
const MAX_SHORT_STRING_BYTES: usize = 256;
/// How far in the future an event timestamp may lie (clock skew between systems).
const MAX_FUTURE: Duration = Duration::days(1);

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    SessionStart,
    AppOpen,
    PageView,
    MessageSent,
    MessageDelivered,
    MessageOpened,
    MessageClicked,
    MessageBounced,
    Unsubscribed,
    Converted,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::SessionStart,
        EventType::AppOpen,
        EventType::PageView,
        EventType::MessageSent,
        EventType::MessageDelivered,
        EventType::MessageOpened,
        EventType::MessageClicked,
        EventType::MessageBounced,
        EventType::Unsubscribed,
        EventType::Converted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SessionStart => "session_start",
            EventType::AppOpen => "app_open",
            EventType::PageView => "page_view",
            EventType::MessageSent => "message_sent",
            EventType::MessageDelivered => "message_delivered",
            EventType::MessageOpened => "message_opened",
            EventType::MessageClicked => "message_clicked",
            EventType::MessageBounced => "message_bounced",
            EventType::Unsubscribed => "unsubscribed",
            EventType::Converted => "converted",
        }
    }

    /// Initiated by the customer: evidence of when they are around.
    pub fn is_customer_initiated(self) -> bool {
        matches!(
            self,
            EventType::SessionStart
                | EventType::AppOpen
                | EventType::PageView
                | EventType::MessageOpened
                | EventType::MessageClicked
                | EventType::Converted
        )
    }

    /// A response to a message on a channel.
    pub fn is_engagement(self) -> bool {
        matches!(self, EventType::MessageOpened | EventType::MessageClicked)
    }

    /// Must name the channel it happened on.
    pub fn requires_channel(self) -> bool {
        matches!(
            self,
            EventType::MessageSent
                | EventType::MessageDelivered
                | EventType::MessageOpened
                | EventType::MessageClicked
                | EventType::MessageBounced
                | EventType::Unsubscribed
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                CoreError::invalid(
                    "type",
                    format!(
                        "unknown event type {s:?}: expected one of {}",
                        all.join(", ")
                    ),
                )
            })
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    Mobile,
    Desktop,
    Tablet,
    Other,
}

impl FromStr for Device {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mobile" => Ok(Device::Mobile),
            "desktop" => Ok(Device::Desktop),
            "tablet" => Ok(Device::Tablet),
            "other" => Ok(Device::Other),
            _ => Err(CoreError::invalid(
                "device",
                format!("unknown device {s:?}: expected one of mobile, desktop, tablet, other"),
            )),
        }
    }
}

/// An event as a client sends it, before any rule is checked.
///
/// Every field is optional and loosely typed so that validation can name each
/// broken rule instead of stopping at the first parse error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    pub event_id: Option<String>,
    pub customer_id: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub timestamp: Option<String>,
    pub channel: Option<String>,
    pub message_id: Option<String>,
    pub decision_id: Option<String>,
    pub experiment: Option<String>,
    pub variant: Option<String>,
    pub device: Option<String>,
    pub automated: Option<bool>,
    pub category: Option<String>,
    pub properties: Option<serde_json::Value>,
}

impl RawEvent {
    /// Reads one JSON value as a raw event, naming every field of the wrong
    /// JSON type. Unknown fields are ignored (clients may send more).
    pub fn from_json(value: serde_json::Value) -> Result<RawEvent, Vec<FieldError>> {
        use serde_json::Value;
        let serde_json::Value::Object(mut map) = value else {
            return Err(vec![FieldError::new("event", "must be a JSON object")]);
        };
        let mut errors = Vec::new();
        let mut string = |name: &str| match map.remove(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                errors.push(FieldError::new(
                    name,
                    format!("must be a string, got {}", json_type(&other)),
                ));
                None
            }
        };
        let mut raw = RawEvent {
            event_id: string("event_id"),
            customer_id: string("customer_id"),
            kind: string("type"),
            timestamp: string("timestamp"),
            channel: string("channel"),
            message_id: string("message_id"),
            decision_id: string("decision_id"),
            experiment: string("experiment"),
            variant: string("variant"),
            device: string("device"),
            category: string("category"),
            ..RawEvent::default()
        };
        match map.remove("automated") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => raw.automated = Some(b),
            Some(other) => errors.push(FieldError::new(
                "automated",
                format!("must be true or false, got {}", json_type(&other)),
            )),
        }
        raw.properties = map.remove("properties");
        if errors.is_empty() {
            Ok(raw)
        } else {
            Err(errors)
        }
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A validated event. Timestamps are UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: EventId,
    pub customer_id: CustomerId,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub automated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Event {
    /// Checks every rule of the event contract against `now` and returns the
    /// event, or every rule it breaks.
    pub fn from_raw(raw: RawEvent, now: DateTime<Utc>) -> Result<Event, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut record = |e: CoreError| errors.extend(e.into_field_errors());

        let event_id = required(raw.event_id, "event_id")
            .and_then(EventId::parse)
            .map_err(&mut record)
            .ok();
        let customer_id = required(raw.customer_id, "customer_id")
            .and_then(CustomerId::parse)
            .map_err(&mut record)
            .ok();
        let kind = required(raw.kind, "type")
            .and_then(|s| s.parse::<EventType>())
            .map_err(&mut record)
            .ok();
        let timestamp = required(raw.timestamp, "timestamp")
            .and_then(|s| parse_timestamp(&s, now))
            .map_err(&mut record)
            .ok();
        let channel_given = raw.channel.is_some();
        let channel = raw
            .channel
            .map(|s| s.parse::<Channel>())
            .transpose()
            .map_err(&mut record)
            .ok()
            .flatten();
        if let Some(k) = kind {
            if k.requires_channel() && !channel_given {
                record(CoreError::invalid(
                    "channel",
                    format!("is required for {k} events"),
                ));
            }
        }
        let device = raw
            .device
            .map(|s| s.parse::<Device>())
            .transpose()
            .map_err(&mut record)
            .ok()
            .flatten();
        let mut short = |value: Option<String>, field: &str| match value {
            Some(v) if v.is_empty() || v.len() > MAX_SHORT_STRING_BYTES => {
                record(CoreError::invalid(
                    field,
                    format!("must be 1-{MAX_SHORT_STRING_BYTES} bytes when present"),
                ));
                None
            }
            other => other,
        };
        let message_id = short(raw.message_id, "message_id");
        let decision_id = short(raw.decision_id, "decision_id");
        let experiment = short(raw.experiment, "experiment");
        let variant = short(raw.variant, "variant");
        let category = short(raw.category, "category");
        let properties = match raw.properties {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Object(map)) => {
                let size = serde_json::to_vec(&map)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > MAX_PROPERTIES_BYTES {
                    record(CoreError::invalid(
                        "properties",
                        format!("is {size} bytes; at most {MAX_PROPERTIES_BYTES} are allowed"),
                    ));
                    None
                } else {
                    Some(map)
                }
            }
            Some(_) => {
                record(CoreError::invalid("properties", "must be a JSON object"));
                None
            }
        };

        match (event_id, customer_id, kind, timestamp) {
            (Some(event_id), Some(customer_id), Some(kind), Some(timestamp))
                if errors.is_empty() =>
            {
                Ok(Event {
                    event_id,
                    customer_id,
                    kind,
                    timestamp,
                    channel,
                    message_id,
                    decision_id,
                    experiment,
                    variant,
                    device,
                    automated: raw.automated.unwrap_or(false),
                    category,
                    properties,
                })
            }
            _ => Err(errors),
        }
    }

    /// Evidence of when the customer is around: customer-initiated and not
    /// produced by a machine or privacy proxy. Includes opening or clicking
    /// a message: the customer was there then.
    pub fn shows_presence(&self) -> bool {
        self.kind.is_customer_initiated() && !self.automated
    }

    /// The customer came on their own: [`Event::shows_presence`], and not a
    /// response to a message. A response happens at a time the sender chose;
    /// counted as a habit, it would teach the send times back to the sender.
    pub fn is_organic_activity(&self) -> bool {
        self.shows_presence() && !self.kind.is_engagement()
    }
}

fn required(value: Option<String>, field: &str) -> Result<String, CoreError> {
    value.ok_or_else(|| CoreError::invalid(field, "is required"))
}

/// Parses an RFC 3339 timestamp with an explicit offset, at most a day after `now`.
pub fn parse_timestamp(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, CoreError> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| {
            CoreError::invalid(
                "timestamp",
                format!(
                    "{s:?} is not an RFC 3339 timestamp with an offset \
                     (e.g. 2026-03-02T19:30:00+08:00): {e}"
                ),
            )
        })?
        .with_timezone(&Utc);
    if t > now + MAX_FUTURE {
        return Err(CoreError::invalid(
            "timestamp",
            format!("{s} is more than a day in the future"),
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    fn raw(kind: &str) -> RawEvent {
        RawEvent {
            event_id: Some("e1".into()),
            customer_id: Some("c1".into()),
            kind: Some(kind.into()),
            timestamp: Some("2026-11-20T19:30:00+08:00".into()),
            ..RawEvent::default()
        }
    }

    fn fields(r: Result<Event, Vec<FieldError>>) -> Vec<String> {
        match r {
            Ok(_) => vec![],
            Err(errs) => errs.into_iter().map(|e| e.field).collect(),
        }
    }

    /// A number in `properties` reads back from its stored JSON as the same
    /// number: serde_json's exact float parsing (`float_roundtrip`), without
    /// which a long integer literal came back one unit in the last place off.
    #[test]
    fn properties_survive_the_stored_form_exactly() {
        let line = br#"{"event_id":"e2","customer_id":"c-42","type":"session_start","timestamp":"2026-11-20T11:30:00Z","properties":{"a":[1,1161111111111111111111111111111111111111111111111111111111111111112,0.1,2.5e-300]}}"#;
        let value: serde_json::Value = serde_json::from_slice(line).expect("json");
        let raw = RawEvent::from_json(value).expect("raw");
        let event = Event::from_raw(raw, now()).expect("valid");
        let stored = serde_json::to_vec(&event).expect("stored");
        let back: Event = serde_json::from_slice(&stored).expect("reads back");
        assert_eq!(back, event);
    }

    #[test]
    fn accepts_a_valid_event_and_stores_utc() {
        let e = Event::from_raw(raw("session_start"), now()).expect("valid");
        assert_eq!(e.timestamp.to_rfc3339(), "2026-11-20T11:30:00+00:00");
        assert!(e.is_organic_activity());
    }

    #[test]
    fn checks_each_rule() {
        let cases: Vec<(RawEvent, Vec<&str>)> = vec![
            (
                RawEvent::default(),
                vec!["event_id", "customer_id", "type", "timestamp"],
            ),
            (raw("teleported"), vec!["type"]),
            (raw("message_opened"), vec!["channel"]),
            (
                RawEvent {
                    channel: Some("fax".into()),
                    ..raw("message_opened")
                },
                vec!["channel"],
            ),
            (
                RawEvent {
                    timestamp: Some("2026-11-20T19:30:00".into()),
                    ..raw("app_open")
                },
                vec!["timestamp"],
            ),
            (
                RawEvent {
                    timestamp: Some("2026-11-24T12:00:00Z".into()),
                    ..raw("app_open")
                },
                vec!["timestamp"],
            ),
            (
                RawEvent {
                    timestamp: Some("2026-11-23T11:00:00Z".into()),
                    ..raw("app_open")
                },
                vec![],
            ),
            (
                RawEvent {
                    device: Some("watch".into()),
                    ..raw("app_open")
                },
                vec!["device"],
            ),
            (
                RawEvent {
                    properties: Some(serde_json::json!([1])),
                    ..raw("app_open")
                },
                vec!["properties"],
            ),
            (
                RawEvent {
                    properties: Some(serde_json::json!({"k": "x".repeat(4100)})),
                    ..raw("app_open")
                },
                vec!["properties"],
            ),
            (
                RawEvent {
                    properties: Some(serde_json::json!({"k": "x".repeat(4000)})),
                    ..raw("app_open")
                },
                vec![],
            ),
            (
                RawEvent {
                    customer_id: Some("a\u{0}".into()),
                    ..raw("app_open")
                },
                vec!["customer_id"],
            ),
            (
                RawEvent {
                    message_id: Some(String::new()),
                    ..raw("app_open")
                },
                vec!["message_id"],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                fields(Event::from_raw(input.clone(), now())),
                expected,
                "{input:?}"
            );
        }
    }

    #[test]
    fn json_types_are_named() {
        let errs = RawEvent::from_json(
            serde_json::json!({"customer_id": 5, "automated": "yes", "extra": 1}),
        )
        .err()
        .unwrap_or_default();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["customer_id", "automated"]);
        assert!(RawEvent::from_json(serde_json::json!([1])).is_err());
        let ok = RawEvent::from_json(serde_json::json!({"event_id": "e", "automated": true}));
        assert_eq!(ok.ok().and_then(|r| r.automated), Some(true));
    }

    #[test]
    fn automated_opens_are_not_activity() {
        let e = Event::from_raw(
            RawEvent {
                channel: Some("email".into()),
                automated: Some(true),
                ..raw("message_opened")
            },
            now(),
        )
        .expect("valid");
        assert!(!e.is_organic_activity() && !e.shows_presence());
        assert!(e.kind.is_engagement());
    }

    #[test]
    fn a_response_to_a_message_shows_presence_but_is_not_organic() {
        for kind in ["message_opened", "message_clicked"] {
            let e = Event::from_raw(
                RawEvent {
                    channel: Some("email".into()),
                    ..raw(kind)
                },
                now(),
            )
            .expect("valid");
            assert!(e.shows_presence() && !e.is_organic_activity(), "{kind}");
        }
        for kind in ["session_start", "app_open", "page_view"] {
            let e = Event::from_raw(raw(kind), now()).expect("valid");
            assert!(e.shows_presence() && e.is_organic_activity(), "{kind}");
        }
    }
}
