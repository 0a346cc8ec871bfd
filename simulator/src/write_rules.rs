//! Whether and how a server takes a client's write: the rules of docs/design.md §5 ("only the
//! Primary accepts a write; … replicates it to its peer before it acknowledges it") as a
//! pure function, so every combination is tested without a socket.

use crate::redundancy::WriteMode;
use po_protocol::{Role, TagInfo, Value, WriteOutcome};

/// What to do with a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePlan {
    /// Answer with this outcome; nothing is applied.
    Refuse(WriteOutcome),
    /// Apply here and acknowledge: no peer to replicate to.
    ApplyAlone,
    /// Replicate to the peer; apply and acknowledge only once it confirmed.
    ReplicateFirst,
}

/// Decides a write of `value` to the tag `tag` (None: no such tag) on a server in `role`
/// whose redundancy state allows `mode`.
pub fn plan_write(role: Role, tag: Option<&TagInfo>, value: Value, mode: WriteMode) -> WritePlan {
    if role != Role::Primary {
        return WritePlan::Refuse(WriteOutcome::NotPrimary);
    }
    let Some(info) = tag else {
        return WritePlan::Refuse(WriteOutcome::UnknownTag);
    };
    if !info.writable {
        return WritePlan::Refuse(WriteOutcome::ReadOnly);
    }
    if info.kind != value.kind() {
        return WritePlan::Refuse(WriteOutcome::TypeMismatch);
    }
    match mode {
        WriteMode::Solo => WritePlan::ApplyAlone,
        // The peer just fell silent and may be promoting: a write acknowledged now could
        // be overruled by its epoch. The client retries at whichever server is Primary.
        WriteMode::Hold => WritePlan::Refuse(WriteOutcome::NotPrimary),
        WriteMode::Replicate => WritePlan::ReplicateFirst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use po_protocol::{TagId, TagKind};

    fn tag(kind: TagKind, writable: bool) -> TagInfo {
        TagInfo {
            id: TagId(0),
            name: "Feeder01.Breaker.Cmd".into(),
            unit: String::new(),
            kind,
            writable,
        }
    }

    #[test]
    fn every_refusal_and_every_mode() {
        use WriteMode::*;
        use WriteOutcome::*;
        let sp = tag(TagKind::Analog, true);
        let v = Value::Analog(1.5);
        for mode in [Solo, Hold, Replicate] {
            assert_eq!(
                plan_write(Role::Standby, Some(&sp), v, mode),
                WritePlan::Refuse(NotPrimary)
            );
            assert_eq!(
                plan_write(Role::Primary, None, v, mode),
                WritePlan::Refuse(UnknownTag)
            );
            assert_eq!(
                plan_write(Role::Primary, Some(&tag(TagKind::Analog, false)), v, mode),
                WritePlan::Refuse(ReadOnly)
            );
            assert_eq!(
                plan_write(Role::Primary, Some(&sp), Value::Digital(true), mode),
                WritePlan::Refuse(TypeMismatch)
            );
        }
        assert_eq!(
            plan_write(Role::Primary, Some(&sp), v, Solo),
            WritePlan::ApplyAlone
        );
        assert_eq!(
            plan_write(Role::Primary, Some(&sp), v, Hold),
            WritePlan::Refuse(NotPrimary)
        );
        assert_eq!(
            plan_write(Role::Primary, Some(&sp), v, Replicate),
            WritePlan::ReplicateFirst
        );
    }
}
