//! What caused a refresh: a label for spans and metrics, and a say in the
//! failure policy.

/// What caused a refresh: in logs, and for the failure policy (a forced
/// refresh does not take a cached failure for an answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Nothing is published yet.
    Load,
    Expiry,
    Background,
    Rejected,
    Forced,
}

impl Trigger {
    /// The `trigger` label of spans and metrics.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Trigger::Load => "load",
            Trigger::Expiry => "expiry",
            Trigger::Background => "background",
            Trigger::Rejected => "rejected",
            Trigger::Forced => "forced",
        }
    }

    pub(super) fn takes_cached_failures(self) -> bool {
        self != Trigger::Forced
    }
}
