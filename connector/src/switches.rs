//! Deliberately broken rules, for proving that the harness's checkers can fail
//! (`harness explore` must find, shrink and replay what these break). They exist only
//! with the `test-switches` feature, which no binary enables; without it every switch
//! is off and compiles away.

#[cfg(feature = "test-switches")]
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "test-switches")]
static PREFER_LOWEST_EPOCH: AtomicBool = AtomicBool::new(false);

/// Broken rule: among healthy Primaries the selector takes the *lowest* epoch and keeps
/// following superseded Primaries, so a connector can go back to an older epoch.
pub fn prefer_lowest_epoch() -> bool {
    #[cfg(feature = "test-switches")]
    return PREFER_LOWEST_EPOCH.load(Ordering::Relaxed);
    #[cfg(not(feature = "test-switches"))]
    false
}

/// Turns the broken rule of [`prefer_lowest_epoch`] on or off (process-wide).
#[cfg(feature = "test-switches")]
pub fn set_prefer_lowest_epoch(on: bool) {
    PREFER_LOWEST_EPOCH.store(on, Ordering::Relaxed);
}

#[cfg(feature = "test-switches")]
static STANDBY_LEVEL_HEALTHY: AtomicBool = AtomicBool::new(false);

/// Broken service-level core: a Standby's data is announced as healthy (255, the level
/// of live Primary data), so a redundancy-aware client can be sent to the Standby.
pub fn standby_level_healthy() -> bool {
    #[cfg(feature = "test-switches")]
    return STANDBY_LEVEL_HEALTHY.load(Ordering::Relaxed);
    #[cfg(not(feature = "test-switches"))]
    false
}

/// Turns the broken core of [`standby_level_healthy`] on or off (process-wide).
#[cfg(feature = "test-switches")]
pub fn set_standby_level_healthy(on: bool) {
    STANDBY_LEVEL_HEALTHY.store(on, Ordering::Relaxed);
}
