//! Deliberately broken rules, for proving that the harness's checkers can fail
//! (`harness explore` must find and shrink what these break). Compiled only with the
//! `test-switches` feature, which no binary enables; without it every switch is off.

#[cfg(feature = "test-switches")]
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "test-switches")]
static ACK_UNREPLICATED: AtomicBool = AtomicBool::new(false);

/// Broken rule: a Primary acknowledges a write its peer did not confirm (split brain can
/// then lose it).
pub fn ack_unreplicated() -> bool {
    #[cfg(feature = "test-switches")]
    return ACK_UNREPLICATED.load(Ordering::Relaxed);
    #[cfg(not(feature = "test-switches"))]
    false
}

/// Turns the broken rule of [`ack_unreplicated`] on or off.
#[cfg(feature = "test-switches")]
pub fn set_ack_unreplicated(on: bool) {
    ACK_UNREPLICATED.store(on, Ordering::Relaxed);
}
