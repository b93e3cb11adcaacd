//! # flushwatch
//!
//! Lock-free flush tracking for change-data-capture pipelines: the safe acknowledgement
//! watermark, and progress-based detection of consumers that are alive but stuck.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod clock;
mod config;
mod error;
pub mod model;
mod registry;
mod report;
mod scan;
mod slot;
mod sync;
mod tracker;

pub use crossbeam_channel;
pub use quanta;

pub use config::{Config, StallPolicy};
pub use error::{ConfigError, Error};
pub use report::{DownCause, Event, ScanReport, ShapeId, ShapeStatus, Stats, Tracked};
pub use tracker::{FlushTracker, Scanner, Writer};

/// A position in the source log (for Postgres, an LSN as a `u64`).
pub type Offset = u64;
