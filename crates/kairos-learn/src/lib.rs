//! Kairos learner: what each customer's behaviour says about when they are
//! around and which channels they answer on.
//!
//! No IO and no clock: every function that depends on time takes it as a
//! parameter; training takes histories and returns a [`ModelBundle`].

pub mod activity;
pub mod channel;
mod error;
pub mod eval;
pub mod exposure;
pub mod fit;
pub mod model;
mod params;
mod posterior;
mod profile;
pub mod response;
pub mod stats;
pub mod train;

pub use activity::{ActivityModel, ActivityParams, QuarterMass, Segment, SegmentMatch};
pub use channel::{BetaPrior, ChannelPriors};
pub use error::{LearnError, Result};
pub use model::ModelBundle;
pub use params::{LearnParams, ValidLearnParams};
pub use posterior::{ActivityPosterior, Basis, ChannelEstimate, PeakWindow};
pub use profile::{
    concerns_attribution, message_key, Attribution, ChannelStats, MessageState, ProfileConfig,
    ProfileState, PROFILE_LAYOUT,
};
pub use response::{ResponseModel, SendContext};
