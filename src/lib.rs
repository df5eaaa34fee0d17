//! lockcheck: tells, with evidence, whether a distributed lock protocol is safe.
//!
//! Layers, top to bottom (no arrow points up): [`spec`] files → [`registry`] → protocol machines
//! ([`protocol`], composed with the shared workload and [`resource`] by [`system`]) → the engines
//! ([`check`], [`sim`]) → [`property`] verdicts → [`trace`]s and reports.
//!
//! Checking a spec from code:
//!
//! ```
//! use lockcheck::check::{check, search::Limits};
//! use lockcheck::spec::{Verdict, load_model};
//!
//! let spec = load_model(std::path::Path::new("models/redis_gc_pause.toml")).unwrap();
//! let outcome = check(&spec, &Limits { progress: false, ..Limits::default() }).unwrap();
//! let stale = outcome.results.iter().find(|r| r.property.name() == "no_stale_write").unwrap();
//! assert_eq!(stale.verdict, Verdict::Violated);
//! println!("{}", stale.trace.as_ref().unwrap().to_text());
//! ```

pub mod battery;
pub mod bench;
pub mod check;
pub mod cli;
pub mod confirm;
pub mod progress;
pub mod property;
pub mod protocol;
pub mod real;
pub mod registry;
pub mod report;
pub mod resource;
pub mod sim;
pub mod spec;
pub mod system;
pub mod trace;
pub mod witness;
