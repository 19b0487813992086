//! Validators: cheap checks run on regex candidates so that build numbers and digests survive.
//! (Being written by a helper; API fixed below.)

/// A check applied to the masked text of a candidate match.
#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    /// No check.
    None,
}
