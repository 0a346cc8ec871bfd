//! The fault actions a scenario schedules (documented in `docs/scenarios.md`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultAction {
    Crash,
    Restart,
    Pause,
    Resume,
    Cut,
    Heal,
    Delay,
    /// A fraction of the messages on a link is lost (`fraction`); `heal` ends it.
    Loss,
    /// Connections on a link are answered with TCP resets (netns); `heal` ends it.
    Reject,
    /// A link's rate is capped (`rate`, e.g. "2mbit"; netns); `heal` ends it.
    Bandwidth,
    /// Every link of a host is cut at once, silently: the pulled cable; `heal` on the
    /// host ends it.
    Isolate,
}

impl FaultAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultAction::Crash => "crash",
            FaultAction::Restart => "restart",
            FaultAction::Pause => "pause",
            FaultAction::Resume => "resume",
            FaultAction::Cut => "cut",
            FaultAction::Heal => "heal",
            FaultAction::Delay => "delay",
            FaultAction::Loss => "loss",
            FaultAction::Reject => "reject",
            FaultAction::Bandwidth => "bandwidth",
            FaultAction::Isolate => "isolate",
        }
    }
}
