//! Integration tests: run the built `logveil` binary as users do.

mod cli;
mod filter;
mod forward;
mod mtls;
mod sidecar;
mod syslog;
mod util;
