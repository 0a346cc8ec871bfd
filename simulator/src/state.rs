//! What a server keeps across restarts: its highest known epoch, recorded in memory for
//! in-process restarts and, with `state_dir`, in `<state_dir>/<name>.epoch` for process
//! restarts (docs/simulator.md, "State").
//!
//! Why: a server promotes to an epoch above every epoch it knows. A process that forgot
//! the epochs it held could, restarted alone, promote to an epoch it (or its peer) held
//! before, and a connector that saw that epoch would take the "new" Primary for an old
//! one. The file is written before a higher epoch is announced, atomically (temporary
//! file, fsync, rename, fsync of the directory), so a crash at any moment leaves either
//! the old or the new number, never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: cannot read the state file: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "{path}: not a valid state file ({reason}); it must hold `highest_epoch = N`. Fix it, or remove it to start from epoch 0 (the server may then reuse an epoch it held before)"
    )]
    Invalid { path: String, reason: String },
    #[error("{path}: cannot create the state directory: {reason}")]
    CreateDir { path: String, reason: String },
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    highest_epoch: u64,
}

/// The file a server keeps its highest known epoch in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochFile {
    path: PathBuf,
}

impl EpochFile {
    pub fn new(path: PathBuf) -> EpochFile {
        EpochFile { path }
    }

    /// The file name for a server of this name; `None` when the name cannot be one
    /// (a separator or `..` would put the file elsewhere than `state_dir`).
    pub fn name_for(server: &str) -> Option<String> {
        let plain = !server.is_empty()
            && !server.starts_with('.')
            && server
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        plain.then(|| format!("{server}.epoch"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The epoch kept in the file; 0 when there is no file yet (a first start).
    pub fn read(&self) -> Result<u64, StateError> {
        let shown = self.path.display().to_string();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(StateError::Read {
                    path: shown,
                    reason: e.to_string(),
                });
            }
        };
        toml::from_str::<StateFile>(&text)
            .map(|s| s.highest_epoch)
            .map_err(|e| StateError::Invalid {
                path: shown,
                reason: e.message().trim().to_string(),
            })
    }

    /// Creates the directory the file lives in, so a first start needs no preparation.
    pub fn create_dir(&self) -> Result<(), StateError> {
        let Some(dir) = self.path.parent() else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).map_err(|e| StateError::CreateDir {
            path: dir.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Replaces the file atomically: a reader (or a crash) sees the old or the new
    /// epoch, never part of one.
    pub fn write(&self, epoch: u64) -> std::io::Result<()> {
        let text = toml::to_string(&StateFile {
            highest_epoch: epoch,
        })
        .map_err(std::io::Error::other)?;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        // The rename itself is durable only once the directory is synced.
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// The known epoch as its owner, the server's `RedundancyRole`, last reported it (see
/// `RedundancyRole::poll_known_epoch_raised`): the record each new incarnation starts
/// from. It lives in memory across in-process restarts and, with a state file, on disk
/// across process restarts. It only keeps what it is told; the running value is the
/// role's.
#[derive(Debug, Default)]
pub(crate) struct EpochRecord {
    /// The highest epoch recorded. A lock, not an atomic: a file write happens under it,
    /// so a slower write of a lower epoch never replaces a higher one on disk.
    recorded: Mutex<u64>,
    file: Option<EpochFile>,
}

impl EpochRecord {
    pub(crate) fn new(initial: u64, file: Option<EpochFile>) -> EpochRecord {
        EpochRecord {
            recorded: Mutex::new(initial),
            file,
        }
    }

    /// The highest epoch recorded: where a new incarnation's role starts from.
    pub(crate) fn get(&self) -> u64 {
        *self.recorded.lock().unwrap()
    }

    /// Records `epoch` if it is higher than the record and, with a state file, writes it
    /// before returning, so the caller can announce it only once it is on disk.
    pub(crate) fn record(&self, epoch: u64) {
        let mut recorded = self.recorded.lock().unwrap();
        if epoch <= *recorded {
            return;
        }
        *recorded = epoch;
        let Some(file) = &self.file else {
            return;
        };
        if let Err(e) = file.write(epoch) {
            tracing::error!(
                file = %file.path().display(),
                epoch,
                error = %e,
                "cannot keep the highest known epoch on disk; a process restart may reuse an epoch"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("po-sim-state-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_epoch_survives_a_write_and_read_and_never_goes_down() {
        let dir = temp_dir("roundtrip");
        let file = EpochFile::new(dir.join("po-a.epoch"));
        file.create_dir().unwrap();
        assert_eq!(file.read().unwrap(), 0, "no file: first start");
        let known = EpochRecord::new(0, Some(file.clone()));
        known.record(3);
        known.record(2);
        assert_eq!(known.get(), 3);
        assert_eq!(file.read().unwrap(), 3);
        assert_eq!(
            std::fs::read_to_string(file.path()).unwrap(),
            "highest_epoch = 3\n"
        );
        assert!(
            !dir.join("po-a.epoch.tmp").exists(),
            "the temporary file is renamed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_state_file_is_refused_naming_the_file() {
        let dir = temp_dir("bad");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("po-a.epoch");
        std::fs::write(&path, "highest_epoch = \"seven\"\n").unwrap();
        let err = EpochFile::new(path.clone()).read().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: not a valid state file (", path.display())),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_plain_names_make_state_files() {
        assert_eq!(EpochFile::name_for("po-a").as_deref(), Some("po-a.epoch"));
        for bad in ["", "../x", "a/b", ".hidden", "po a"] {
            assert_eq!(EpochFile::name_for(bad), None, "{bad}");
        }
    }
}
