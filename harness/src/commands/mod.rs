//! One module per subcommand: its options (clap derive) and its `cmd_*` function.

pub mod bare_modbus;
pub mod bench;
pub mod explore;
pub mod flood;
pub mod load;
pub mod plan;
pub mod run;

use harness::scenario::Scenario;
use std::path::PathBuf;
use std::process::ExitCode;

/// The harness's tokio runtime: current-thread for one thread, else multi-threaded.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Loads every scenario first so that an invalid file stops the run before anything starts.
pub fn load_all(files: &[PathBuf]) -> Result<Vec<Scenario>, ExitCode> {
    let mut out = Vec::new();
    let mut failed = false;
    for f in files {
        match Scenario::load(f) {
            Ok(s) => out.push(s),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        Err(ExitCode::from(2))
    } else {
        Ok(out)
    }
}
