//! logveil-patterns: the pure, synchronous redaction engine and its built-in rule packs.
//!
//! No I/O and no async: callers hand in bytes and get redacted bytes back.
//! [`RedactorBuilder`] compiles rules once into an immutable, cheaply cloned [`Redactor`]
//! (`Send + Sync`); each thread keeps its own [`Scratch`], each input its own [`Stream`].
//!
//! ```
//! let r = logveil_patterns::RedactorBuilder::new().build().unwrap();
//! let (out, _) = r.redact_all(b"export GITHUB_TOKEN=ghp_0123456789abcdefghijABCDEFGHIJ012345\n");
//! assert!(!String::from_utf8_lossy(&out).contains("ghp_0123456789"));
//! ```
#![deny(missing_docs)]

/// Whether this x86-64 CPU has AVX-512 F and BW and the named extensions: the run-time
/// check of each AVX-512 path (each falls back to AVX2, Teddy or scalar code without them).
#[cfg(target_arch = "x86_64")]
macro_rules! has_avx512 {
    ($($ext:tt),*) => {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            $(&& std::arch::is_x86_feature_detected!($ext))*
    };
}

mod anchor;
mod at_sign;
mod compile;
mod error;
mod frame;
mod known;
mod mask;
mod permute;
mod prefix;
pub mod rule;
mod scan;
mod shape;
mod stream;
pub mod validator;
mod view;

pub use compile::{
    check_examples, ExampleFailure, Redactor, RedactorBuilder, RuleInfo, DEFAULT_MAX_LINE,
    DEFAULT_WINDOW, KNOWN_VALUE_ID, LINE_TOO_LONG_ID, MAX_KNOWN_BYTES, PRIVATE_KEY_BLOCK_ID,
};
pub use error::Error;
pub use known::{encoded_forms, KnownValues, MIN_KNOWN_LEN};
pub use mask::{MaskStyle, PseudonymKey};
pub use rule::Category;
pub use scan::{Counts, Piece, Plan, Scratch};
pub use stream::{Stream, MAX_INBAND_VALUES};
