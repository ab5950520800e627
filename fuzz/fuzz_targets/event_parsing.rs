//! Any bytes through the event path of `POST /v1/events`: JSON, then
//! `RawEvent::from_json`, then `Event::from_raw`. Nothing may panic, and an
//! accepted event must survive a round trip through its stored JSON form.
#![no_main]

use chrono::{TimeZone, Utc};
use kairos_core::{Event, RawEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).single().unwrap_or_default();
    // One body may hold one event or many, one per line (NDJSON).
    for line in data.split(|b| *b == b'\n') {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        let Ok(raw) = RawEvent::from_json(value) else {
            continue;
        };
        if let Ok(event) = Event::from_raw(raw, now) {
            let stored = serde_json::to_vec(&event).unwrap_or_default();
            let back: Event = serde_json::from_slice(&stored).unwrap_or_else(|e| {
                panic!("an accepted event does not read back: {e}")
            });
            assert_eq!(back, event);
        }
    }
});
