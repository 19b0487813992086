//! The logveil agent: command line, the stdin filter, `run --`, and (later) the sidecar and
//! forwarder. Patterns are never parsed here: the engine crate owns them.

pub mod cli;
pub mod filter;
pub mod redact_opts;
pub mod run_cmd;
