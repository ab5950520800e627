//! Kairos integration tests: one binary, a module per area. HTTP tests go
//! through `kairos_server::create_app`, as `kairos serve` does.

mod support;

mod browser;
mod config_files;
mod core_loop;
mod customers;
mod decisions;
mod durability;
mod events;
mod experiments;
mod layouts;
mod learner;
mod production;
mod redis;
mod simulation;
