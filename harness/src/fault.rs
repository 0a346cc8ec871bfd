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
        }
    }
}
