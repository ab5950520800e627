//! Kairos learner: what each customer's behaviour says about when they are
//! around and which channels they answer on.
//!
//! No IO and no clock: every function that depends on time takes `now`.

pub mod activity;
mod error;
pub mod eval;
pub mod fit;
mod params;
mod population;
mod posterior;
mod profile;
pub mod stats;

pub use error::{LearnError, Result};
pub use params::{LearnParams, ValidLearnParams};
pub use population::{Population, PopulationFit};
pub use posterior::{ActivityPosterior, Basis, ChannelEstimate, PeakWindow};
pub use profile::{first_response as profile_first_response, ChannelStats, ProfileState};
