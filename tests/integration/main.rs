//! Integration tests: run the built `logveil` binary as users do.

mod cli;
mod filter;
mod forward;
mod forward_load;
mod mtls;
mod receiver;
mod sidecar;
mod syslog;
mod util;
