//! What every binary's command line shares: the version it prints and how it logs.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// The git commit the binaries were built from (short hash), or "unknown" when they were
/// built outside a git checkout (recorded by runtime/build.rs).
pub const GIT_COMMIT: &str = env!("PO_GIT_COMMIT");

/// What `--version` prints after the binary's name: the workspace version (every crate
/// shares it) and the commit, e.g. `0.1.0 (commit 1a2b3c4)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PO_GIT_COMMIT"),
    ")"
);

/// A duration on a command line, as every file and example writes it (`3s`, `500ms`,
/// `1m`). humantime alone answers a bare number with "for example 3sec": a spelling no
/// file of the project uses, so a number without a unit gets the project's own hint.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| explain_duration_error(s, &e.to_string()))
}

/// A duration that did not parse (`text`, with the parser's `message`), explained in the
/// spelling the project writes: a bare number is told to write `3s`; anything else gets
/// an example. Used for command lines and configuration files alike.
pub fn explain_duration_error(text: &str, message: &str) -> String {
    let number = text.trim().trim_matches('"');
    if !number.is_empty() && number.parse::<f64>().is_ok() {
        return format!("\"{number}\" has no unit: write e.g. \"{number}s\" or \"{number}ms\"");
    }
    if message.contains("expected a duration") {
        return format!("\"{number}\" is not a duration: write e.g. \"3s\" or \"500ms\"");
    }
    message.replace("sec or ", "s or ")
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    // Plain comments, not doc comments, on the variants: clap would otherwise switch every
    // `--help` to its long layout to list them; the argument's help says what they are.
    // Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    // One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

/// Installs the global log subscriber: `filter` in tracing's `EnvFilter` syntax (`fallback`
/// when it does not parse), written to standard error in `format`.
pub fn init_logging(format: LogFormat, filter: &str, fallback: &str) {
    init_logging_with_timer(format, filter, fallback, SystemTime);
}

/// [`init_logging`] with the timestamps of `timer` (the harness stamps simulated time).
pub fn init_logging_with_timer<T>(format: LogFormat, filter: &str, fallback: &str, timer: T)
where
    T: FormatTime + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(fallback));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_timer(timer);
    match format {
        LogFormat::Text => builder
            // Colour codes only for a terminal: a log file (or a pipe) gets plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // No colour codes inside JSON strings, whatever stderr is.
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::*;

    #[test]
    fn a_bare_number_is_told_to_write_s() {
        let e = parse_duration("3").unwrap_err();
        assert_eq!(e, "\"3\" has no unit: write e.g. \"3s\" or \"3ms\"");
        assert_eq!(parse_duration("3s"), Ok(std::time::Duration::from_secs(3)));
        let e = parse_duration("5 parsecs").unwrap_err();
        assert!(!e.contains("sec or"), "{e}");
        assert_eq!(
            explain_duration_error(
                "soon",
                "invalid value: string \"soon\", expected a duration"
            ),
            "\"soon\" is not a duration: write e.g. \"3s\" or \"500ms\""
        );
    }
}
