pub mod admin;
pub mod customers;
pub mod decisions;
pub mod events;
pub mod experiments;
pub mod layouts;
