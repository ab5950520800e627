//! Kairos decision engine: for one customer, the best channel and send time
//! in a window, the rules it respects, and the reasons for the choice.
//!
//! No IO and no clock: `now` is part of the input.

pub mod caps;
mod engine;
mod error;
mod params;
pub mod sim;

pub use engine::{
    channel_status, decide, in_session, Action, Alternative, Candidate, ChannelStatus, Decision,
    DecisionBasis, DecisionInput, Suppression, SuppressionReason, Window, IN_SESSION,
};
pub use error::{DecideError, Result};
pub use params::{DecideParams, QuietHours, ResponseScorer, ValidDecideParams};
