//! Small mechanisms the parts share: a future that finishes when its caller
//! gives up, jitter, deadlines that cannot overflow, capped HTTP reads.

pub(crate) mod finish_on_drop;
pub(crate) mod http;
pub(crate) mod jitter;
pub(crate) mod time;
