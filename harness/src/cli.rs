//! Parsers of command-line values shared by the `harness` subcommands.

use std::time::Duration;

/// A duration as every scenario file and example writes it (`"3s"`, `"500ms"`, `"1m"`).
///
/// humantime alone answers a bare number with "for example 3sec": a spelling no file of
/// the project uses, so a number without a unit gets the project's own hint.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| explain_duration_error(s, &e.to_string()))
}

/// humantime's message for `text`, with its unit suggestion in the spelling the project
/// writes (`3s`, not `3sec`).
pub fn explain_duration_error(text: &str, message: &str) -> String {
    let number = text.trim().trim_matches('"');
    if !number.is_empty() && number.parse::<f64>().is_ok() {
        return format!("`{number}` has no unit: write e.g. `{number}s` or `{number}ms`");
    }
    message.replace("sec or ", "s or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_number_is_told_to_write_s() {
        let e = parse_duration("3").unwrap_err();
        assert_eq!(e, "`3` has no unit: write e.g. `3s` or `3ms`");
        assert!(!e.contains("sec"), "{e}");
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5 parsecs").is_err());
    }
}
