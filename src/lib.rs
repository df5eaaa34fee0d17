//! lockcheck: tells, with evidence, whether a distributed lock protocol is safe.
//!
//! Layers, top to bottom (no arrow points up): [`spec`] files → [`registry`] → protocol machines
//! ([`protocol`], composed with the shared workload and [`resource`] by [`system`]) → the engines
//! ([`check`]) → [`property`] verdicts → [`trace`]s and reports.

pub mod bench;
pub mod check;
pub mod cli;
pub mod property;
pub mod protocol;
pub mod registry;
pub mod report;
pub mod resource;
pub mod sim;
pub mod spec;
pub mod system;
pub mod trace;
