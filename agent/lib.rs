//! The logveil agent: command line, the stdin filter, `run --`, and (later) the sidecar and
//! forwarder. Patterns are never parsed here: the engine crate owns them.

pub mod cli;
pub mod filter;
pub mod redact_opts;
pub mod run_cmd;
// Runner sidecar (`agent --config`, `check-config`, `keygen`, `verify`).
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod durable;
pub mod event;
pub mod export;
pub mod keys;
pub mod pipeline;
pub mod seal;
pub mod sink;
pub mod source;
pub mod verify;
// Forwarding (issue 5): durable spool, HTTPS sinks.
pub mod spool;
pub mod spool_key;
// Metrics and health endpoint.
pub mod metrics;
