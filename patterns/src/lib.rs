//! logveil-patterns: the pure, synchronous redaction engine and its built-in rule packs.
//!
//! No I/O and no async: callers hand in bytes and get redacted bytes back.
//! `RedactorBuilder` compiles rules once into an immutable, cheaply cloned `Redactor`
//! (`Send + Sync`); each thread or stream keeps its own mutable `Stream` state.
#![deny(missing_docs)]

pub mod validator;
