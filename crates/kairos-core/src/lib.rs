//! Kairos vocabulary: identifiers, channels, events and local time.
//!
//! Everything here is pure: no IO, no clock. Functions that need "now" take it
//! as a parameter.

mod channel;
pub mod customer;
mod error;
mod event;
pub mod f32_block;
mod ids;
pub mod instant_serde;
pub mod rfc3339;
pub mod time;

pub use channel::Channel;
pub use customer::{ChannelPrefs, Customer, CustomerPatch};
pub use error::{CoreError, FieldError, Result};
pub use event::{Device, Event, EventType, RawEvent, MAX_PROPERTIES_BYTES};
pub use ids::{CustomerId, EventId};
pub use time::{HourOfWeek, LocalTimeOfDay, HOURS_PER_WEEK, QUARTERS_PER_DAY, QUARTERS_PER_WEEK};
