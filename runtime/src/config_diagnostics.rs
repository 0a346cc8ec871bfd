//! What is wrong with a TOML file, every problem at once: the one helper behind the
//! connector's configuration, po-sim's configuration and the harness's scenario files.
//!
//! A problem is (file, line, column, key path, message) and is printed one a line as
//! `FILE:LINE:COL: KEY: MESSAGE`, under a `FILE: N problems` header.
//!
//! Syntax errors come from the TOML parser's recovering mode (every line that does not
//! parse, not only the first). Type errors come from serde, which stops at the first: each
//! one is noted, the faulty entry is removed from the parsed document and serde is run
//! again, so the remaining keys are still checked. The rules serde cannot express are
//! checked by the caller on the value and located here by key path. Every location comes
//! from the parser's spans, so dotted keys, inline tables, quoted keys and arrays of tables
//! are found where they are written.

use serde::de::DeserializeOwned;
use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line; `None` when the problem has no place in the file (a missing
    /// top-level key, an unreadable file).
    pub line: Option<usize>,
    /// 1-based column, in characters, of the key (or of the value or the table header).
    pub column: Option<usize>,
    /// Dotted key path; arrays of tables are indexed as `source[1].address`.
    pub key: String,
    pub message: String,
}

/// Every problem of one file (the binaries exit with 2 on it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics {
    pub path: String,
    pub problems: Vec<Problem>,
}

impl Diagnostics {
    /// A file that could not be read: one problem, on the key `file`.
    pub fn unreadable(path: &str, error: &std::io::Error) -> Diagnostics {
        Diagnostics {
            path: path.to_string(),
            problems: vec![Problem {
                line: None,
                column: None,
                key: "file".into(),
                message: format!("cannot read: {error}"),
            }],
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{}: {n} problem{}",
            self.path,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            // The `file:line:col:` prefix is the one editors and terminals jump to.
            match (p.line, p.column) {
                (Some(l), Some(c)) => write!(f, "\n  {}:{l}:{c}: ", self.path)?,
                (Some(l), None) => write!(f, "\n  {}:{l}: ", self.path)?,
                _ => write!(f, "\n  {}: ", self.path)?,
            }
            write!(f, "{}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

/// Reads, parses, deserializes and validates `path` in one call: every problem, or the
/// value. `validate` returns (key path, message) pairs for the rules serde cannot express.
pub fn load<T: DeserializeOwned>(
    path: &std::path::Path,
    validate: impl FnOnce(&T) -> Vec<(String, String)>,
) -> Result<T, Diagnostics> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Diagnostics::unreadable(&origin, &e))?;
    check(&text, &origin, validate)
}

/// [`load`] on text already read; `origin` names it in the problems.
pub fn check<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    validate: impl FnOnce(&T) -> Vec<(String, String)>,
) -> Result<T, Diagnostics> {
    let mut file = TomlFile::parse(text, origin)?;
    let value = file.deserialize::<T>();
    if let Some(v) = &value {
        for (key, message) in validate(v) {
            file.problem(&key, message);
        }
    }
    file.finish(value)
}

/// A parsed TOML file and the problems found in it so far.
#[derive(Debug)]
pub struct TomlFile<'t> {
    text: &'t str,
    origin: String,
    doc: Spanned<DeTable<'t>>,
    problems: Vec<Problem>,
    /// Keys whose entry serde refused and that were removed: the value holds a default
    /// there, not what the file says.
    refused: Vec<String>,
}

impl<'t> TomlFile<'t> {
    /// Parses `text`; every line with a syntax error is a problem (the first error of a
    /// line only: the parser's recovery reports follow-on errors on the same line).
    pub fn parse(text: &'t str, origin: &str) -> Result<TomlFile<'t>, Diagnostics> {
        let (doc, errors) = DeTable::parse_recoverable(text);
        let mut file = TomlFile {
            text,
            origin: origin.to_string(),
            doc,
            problems: Vec::new(),
            refused: Vec::new(),
        };
        if errors.is_empty() {
            return Ok(file);
        }
        let mut errors: Vec<_> = errors
            .iter()
            .map(|e| {
                (
                    e.span().map_or(0, |s| s.start),
                    e.message().trim().to_string(),
                )
            })
            .collect();
        errors.sort_by_key(|(at, _)| *at);
        let mut last_line = None;
        for (at, message) in errors {
            let (line, column) = line_column(text, at);
            if last_line == Some(line) {
                continue;
            }
            last_line = Some(line);
            file.problems.push(Problem {
                line: Some(line),
                column: Some(column),
                key: "syntax".into(),
                message,
            });
        }
        Err(file.into_diagnostics())
    }

    /// Deserializes the file as `T`, noting every type error, unknown key and missing key
    /// on the way. The value is what remains once the refused entries are removed (so the
    /// caller's rules still check the rest); `None` when nothing deserializes. Either way
    /// [`TomlFile::finish`] refuses a file with problems.
    pub fn deserialize<T: DeserializeOwned>(&mut self) -> Option<T> {
        let mut work = self.doc.clone();
        // Each key is renamed at most once: the search ends even if a rename were refused
        // again (every other step removes an entry).
        let mut renamed: Vec<Range<usize>> = Vec::new();
        loop {
            let err = match T::deserialize(toml::de::Deserializer::from(work.clone())) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let message = err.message().trim().to_string();
            let Some(span) = err.span() else {
                self.problems.push(Problem {
                    line: None,
                    column: None,
                    key: "file".into(),
                    message: explain_serde_message(&message),
                });
                return None;
            };
            // Paths are named from the file as written (indices of arrays of tables as
            // the user counts them), the removal is done on the working copy.
            let mut key = path_name(&steps_at(self.doc.get_ref(), &span));
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|r| r.strip_suffix('`'));
            let message = match missing {
                Some(field) => {
                    key = join(&key, field);
                    "is missing".to_string()
                }
                None => explain_serde_message(&message),
            };
            let consequence = missing.is_some() && self.same_mistake(&key);
            if !consequence {
                let (line, column) = match span.is_empty() {
                    // An empty span is the document's (a missing top-level key).
                    true => (None, None),
                    false => {
                        let (l, c) = line_column(self.text, span.start);
                        (Some(l), Some(c))
                    }
                };
                self.problems.push(Problem {
                    line,
                    column,
                    key: if key.is_empty() { "file".into() } else { key },
                    message,
                });
            }
            // A typo'd key is read as the key it nearly spells, so its value and the
            // rules on it are still checked (its problem is already noted).
            let steps = steps_at(work.get_ref(), &span);
            if let Some((_, intended)) = nearest_key(err.message())
                && !renamed.contains(&span)
                && rename(work.get_mut(), &steps, intended)
            {
                renamed.push(span);
                continue;
            }
            // Anything else is removed; a missing key by removing its table. At the top
            // level nothing is left to remove and the search stops.
            if steps.is_empty() || !remove(work.get_mut(), &steps) {
                return None;
            }
            self.refused
                .push(path_name(&steps_at(self.doc.get_ref(), &span)));
        }
    }

    /// Whether a missing `key` is a mistake already reported: its bad value was removed,
    /// or a typo'd key was refused in the same table.
    fn same_mistake(&self, key: &str) -> bool {
        let table = |k: &str| k.rsplit_once('.').map_or("", |(t, _)| t).to_string();
        self.has_problem_under(key)
            || self
                .problems
                .iter()
                .any(|p| p.message.starts_with("unknown key `") && table(&p.key) == table(key))
    }

    /// Notes a problem on `key` (a dotted path, `fault[1].at`), located where the key is
    /// written, or failing that at its nearest table that is. A rule on a key whose entry
    /// serde refused would judge a default, not the file, and is not noted; nor is a key
    /// said to be missing ("is missing") when that is a mistake already reported.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let message = message.into();
        let refused = self.refused.iter().any(|r| {
            key == r || (key.starts_with(r.as_str()) && key[r.len()..].starts_with(['.', '[']))
        });
        if refused || (message.starts_with("is missing") && self.same_mistake(key)) {
            return;
        }
        let (line, column) = match self.locate(key) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        self.problems.push(Problem {
            line,
            column,
            key: key.to_string(),
            message,
        });
    }

    /// Whether a problem was already noted on `table` or a key under it.
    pub fn has_problem_under(&self, table: &str) -> bool {
        self.problems.iter().any(|p| {
            p.key == table
                || (p.key.starts_with(table) && p.key[table.len()..].starts_with(['.', '[']))
        })
    }

    /// The 1-based (line, column) of `key` (a dotted path, `source[1].address`); failing
    /// the key itself, of its nearest enclosing table or entry that is in the file.
    pub fn locate(&self, key: &str) -> Option<(usize, usize)> {
        locate_span(self.doc.get_ref(), key).map(|s| line_column(self.text, s.start))
    }

    /// The value, or every problem noted (sorted by line; unlocated ones last).
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Diagnostics> {
        match value {
            Some(v) if self.problems.is_empty() => Ok(v),
            _ => Err(self.into_diagnostics()),
        }
    }

    fn into_diagnostics(mut self) -> Diagnostics {
        self.problems
            .sort_by_key(|p| (p.line.unwrap_or(usize::MAX), p.column.unwrap_or(0)));
        Diagnostics {
            path: self.origin,
            problems: self.problems,
        }
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path to the deepest entry whose key or value spans `span.start` (empty: none
/// does, the span is the document's). Every table is searched whatever its own span:
/// a table's span is its header, while its entries may be written anywhere (dotted keys).
fn steps_at(table: &DeTable<'_>, span: &Range<usize>) -> Vec<Step> {
    // serde gives the document's own span, empty, for a key missing at the top level.
    if span.is_empty() {
        return Vec::new();
    }
    fn in_table(table: &DeTable<'_>, at: usize) -> Option<Vec<Step>> {
        for (k, v) in table.iter() {
            let here = || vec![Step::Key(k.get_ref().to_string())];
            if let Some(mut deeper) = in_value(v.get_ref(), at) {
                let mut path = here();
                path.append(&mut deeper);
                return Some(path);
            }
            if k.span().contains(&at) || v.span().contains(&at) {
                return Some(here());
            }
        }
        None
    }
    fn in_value(value: &DeValue<'_>, at: usize) -> Option<Vec<Step>> {
        match value {
            DeValue::Table(t) => in_table(t, at),
            DeValue::Array(a) => a.iter().enumerate().find_map(|(i, e)| {
                let deeper = in_value(e.get_ref(), at);
                if deeper.is_none() && !e.span().contains(&at) {
                    return None;
                }
                let mut path = vec![Step::Index(i)];
                path.extend(deeper.unwrap_or_default());
                Some(path)
            }),
            _ => None,
        }
    }
    in_table(table, span.start).unwrap_or_default()
}

/// `source[1].address` from its steps.
fn path_name(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            // Written as TOML writes it: a key that is not bare is quoted.
            Step::Key(k)
                if k.is_empty()
                    || !k
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                out = join(&out, &format!("\"{k}\""))
            }
            Step::Key(k) => out = join(&out, k),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The steps of a dotted key path (`fault[1].at`, `tls.licence_holders."CA.1"`): a
/// quoted key may hold dots and brackets.
fn parse_path(key: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut name = String::new();
    let mut chars = key.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => name.push(c),
            '.' => {
                if !name.is_empty() {
                    out.push(Step::Key(std::mem::take(&mut name)));
                }
            }
            '[' => {
                if !name.is_empty() {
                    out.push(Step::Key(std::mem::take(&mut name)));
                }
                let index: String = chars.by_ref().take_while(|c| *c != ']').collect();
                match index.trim().parse() {
                    Ok(i) => out.push(Step::Index(i)),
                    Err(_) => return out,
                }
            }
            _ => name.push(c),
        }
    }
    if !name.is_empty() {
        out.push(Step::Key(name));
    }
    out
}

/// The span of the key at `key`, or of the nearest enclosing entry in the document.
fn locate_span(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    let mut found = None;
    let mut value: Option<&DeValue<'_>> = None;
    let mut current = table;
    for step in parse_path(key) {
        match (step, value) {
            (Step::Key(k), None) | (Step::Key(k), Some(DeValue::Table(_))) => {
                if let Some(DeValue::Table(t)) = value {
                    current = t;
                }
                let Some((name, v)) = current.get_key_value(k.as_str()) else {
                    break;
                };
                // A `[table]` is pointed at from its header's start, a key at the key.
                found = Some(match v.get_ref() {
                    DeValue::Table(_) if v.span().start < name.span().start => v.span(),
                    _ => name.span(),
                });
                value = Some(v.get_ref());
            }
            (Step::Index(i), Some(DeValue::Array(a))) => {
                let Some(e) = a.get(i) else { break };
                found = Some(e.span());
                value = Some(e.get_ref());
            }
            _ => break,
        }
    }
    found
}

/// Renames the key at `steps` to `to`, unless its table has that key already.
fn rename(table: &mut DeTable<'_>, steps: &[Step], to: &str) -> bool {
    let Some((Step::Key(from), parents)) = steps.split_last() else {
        return false;
    };
    let Some(parent) = table_at_mut(table, parents) else {
        return false;
    };
    if parent.contains_key(to) {
        return false;
    }
    let Some((key, value)) = parent.remove_entry(from.as_str()) else {
        return false;
    };
    parent.insert(Spanned::new(key.span(), to.to_string().into()), value);
    true
}

/// The table at `steps` (keys and array indices).
fn table_at_mut<'a, 'i>(table: &'a mut DeTable<'i>, steps: &[Step]) -> Option<&'a mut DeTable<'i>> {
    let mut value: Option<&'a mut DeValue<'i>> = None;
    let mut current = Some(table);
    for step in steps {
        let next = match (step, current.take(), value.take()) {
            (Step::Key(k), Some(t), _) => t.get_mut(k.as_str())?.get_mut(),
            (Step::Key(k), None, Some(DeValue::Table(t))) => t.get_mut(k.as_str())?.get_mut(),
            (Step::Index(i), None, Some(DeValue::Array(a))) => a.get_mut(*i)?.get_mut(),
            _ => return None,
        };
        value = Some(next);
    }
    match (current, value) {
        (Some(t), None) => Some(t),
        (None, Some(DeValue::Table(t))) => Some(t),
        _ => None,
    }
}

/// Removes the entry at `steps` (an array element when the last step is an index).
fn remove(table: &mut DeTable<'_>, steps: &[Step]) -> bool {
    let Some(Step::Key(k)) = steps.first() else {
        return false;
    };
    let rest = &steps[1..];
    if rest.is_empty() {
        return table.remove(k.as_str()).is_some();
    }
    let Some(v) = table.get_mut(k.as_str()) else {
        return false;
    };
    remove_in(v.get_mut(), rest)
}

fn remove_in(value: &mut DeValue<'_>, steps: &[Step]) -> bool {
    match (value, steps.first()) {
        (DeValue::Table(t), Some(Step::Key(_))) => remove(t, steps),
        (DeValue::Array(a), Some(Step::Index(i))) => {
            let i = *i;
            if steps.len() == 1 {
                if i >= a.len() {
                    return false;
                }
                // DeArray has no `remove`: rebuild it without the element.
                let kept: DeArray<'_> = std::mem::replace(a, DeArray::new())
                    .into_iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, e)| e)
                    .collect();
                *a = kept;
                return true;
            }
            match a.get_mut(i) {
                Some(e) => remove_in(e.get_mut(), &steps[1..]),
                None => false,
            }
        }
        _ => false,
    }
}

/// For serde's "unknown field" message, the field and the expected one it nearly spells
/// (at most two edits away).
fn nearest_key(message: &str) -> Option<(&str, &str)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once("`, expected ")?;
    expected
        .trim_start_matches("one of ")
        .split(", ")
        .flat_map(|c| c.split(" or "))
        .map(|c| c.trim_matches('`'))
        .map(|c| (strsim::damerau_levenshtein(field, c), c))
        .min()
        .filter(|(d, _)| *d <= 2)
        .map(|(_, c)| (field, c))
}

/// Makes serde's messages say what to do: suggests the nearest key for a typo and shows
/// the expected form of an address or a duration.
pub fn explain_serde_message(message: &str) -> String {
    if let Some((field, nearest)) = nearest_key(message) {
        return format!("unknown key `{field}`; did you mean `{nearest}`?");
    }
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once("`, expected ")
    {
        return format!("unknown key `{field}`; expected {expected}");
    }
    if message == "invalid socket address syntax" {
        return "not an IP:port address (e.g. \"127.0.1.1:23500\")".into();
    }
    if message == "invalid IP address syntax" {
        return "not an IP address (e.g. \"127.0.1.1\")".into();
    }
    // serde's "expected a duration" does not say how one is written.
    if let Some(text) = message
        .strip_prefix("invalid value: string \"")
        .and_then(|rest| rest.strip_suffix("\", expected a duration"))
    {
        return crate::cli::explain_duration_error(text, message);
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::net::SocketAddr;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // Read by serde only: the tests are about the problems.
    struct Source {
        name: String,
        address: SocketAddr,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Site {
        devices: u32,
        #[serde(default)]
        label: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Config {
        name: String,
        #[serde(default)]
        source: Vec<Source>,
        site: Site,
    }

    fn problems(text: &str) -> Vec<(Option<usize>, Option<usize>, String, String)> {
        match check::<Config>(text, "c.toml", |_| vec![]) {
            Ok(_) => vec![],
            Err(d) => d
                .problems
                .into_iter()
                .map(|p| (p.line, p.column, p.key, p.message))
                .collect(),
        }
    }

    #[test]
    fn every_type_error_is_listed_with_its_place_and_key() {
        let text = "name = \"x\"\n[[source]]\nname = \"a\"\n  adress = \"127.0.0.1:1\"\n\
                    [[source]]\nname = \"b\"\naddress = \"nowhere\"\n[site]\ndevices = \"many\"\n";
        assert_eq!(
            problems(text),
            vec![
                (
                    Some(4),
                    Some(3),
                    "source[0].adress".into(),
                    "unknown key `adress`; did you mean `address`?".into()
                ),
                (
                    Some(7),
                    Some(11),
                    "source[1].address".into(),
                    "not an IP:port address (e.g. \"127.0.1.1:23500\")".into()
                ),
                (
                    Some(9),
                    Some(11),
                    "site.devices".into(),
                    "invalid type: string \"many\", expected u32".into()
                ),
            ]
        );
    }

    #[test]
    fn a_missing_key_is_named_at_its_table_and_not_again_after_a_removal() {
        // `source[0]` lacks its address: said once, at its header.
        let text = "name = \"x\"\n[[source]]\nname = \"a\"\n[site]\ndevices = 1\n";
        assert_eq!(
            problems(text),
            vec![(
                Some(2),
                Some(1),
                "source[0].address".into(),
                "is missing".into()
            )]
        );
        // No `[site]` at all: no place to point at.
        assert_eq!(
            problems("name = \"x\"\n"),
            vec![(None, None, "site".into(), "is missing".into())]
        );
        // A bad required value is one problem, not also "missing" for the key or its table.
        let text = "name = \"x\"\nsite.devices = -1\n";
        let found = problems(text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].2, "site.devices");
    }

    #[test]
    fn every_line_with_a_syntax_error_is_listed() {
        let text = "name = \"x\nsite = 3 4\nok = 1\n[broken\n";
        let lines: Vec<_> = problems(text).into_iter().map(|p| (p.0, p.2)).collect();
        assert_eq!(
            lines,
            vec![
                (Some(1), "syntax".to_string()),
                (Some(2), "syntax".to_string()),
                (Some(4), "syntax".to_string()),
            ]
        );
    }

    #[test]
    fn keys_are_located_however_they_are_written() {
        let text = "name = \"x\"\nsite = { devices = 2 }\n[[source]]\nname = \"a\"\n\n\
                    [[source]]\n\"name\" = \"b\"\n[a.b]\nc.d = 1\n";
        let file = TomlFile::parse(text, "c.toml").unwrap();
        assert_eq!(file.locate("name"), Some((1, 1)));
        assert_eq!(file.locate("site.devices"), Some((2, 10)));
        assert_eq!(file.locate("source[1]"), Some((6, 1)));
        assert_eq!(file.locate("source[1].name"), Some((7, 1)));
        assert_eq!(file.locate("a.b.c.d"), Some((9, 3)));
        // Not in the file: its nearest table that is.
        assert_eq!(file.locate("source[1].address"), Some((6, 1)));
        assert_eq!(file.locate("a.b.e"), Some((8, 1)));
        assert_eq!(file.locate("nothing"), None);
        let file = TomlFile::parse("[h]\n\"CA.1\" = \"x\"\n", "c.toml").unwrap();
        assert_eq!(file.locate("h.\"CA.1\""), Some((2, 1)));
    }

    #[test]
    fn rules_of_the_caller_are_located_and_sorted_with_the_rest() {
        let text = "name = \"\"\n[site]\ndevices = 0\n";
        let e = check::<Config>(text, "c.toml", |c| {
            let mut out = vec![];
            if c.site.devices == 0 {
                out.push(("site.devices".into(), "must be at least 1".into()));
            }
            if c.name.is_empty() {
                out.push(("name".into(), "must not be empty".into()));
            }
            out
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml: 2 problems\n  c.toml:1:1: name: must not be empty\n  \
             c.toml:3:1: site.devices: must be at least 1"
        );
    }

    #[test]
    fn a_rule_on_a_refused_key_is_not_noted() {
        // `devices` was refused and removed; a rule on it would judge its absence, not
        // what the file says. The rule on `name` still runs on the rest.
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Loose {
            name: String,
            #[serde(default)]
            devices: u32,
        }
        let e = check::<Loose>("name = \"\"\ndevices = \"many\"\n", "c.toml", |c| {
            vec![
                (
                    "devices".into(),
                    format!("must be at least 1, not {}", c.devices),
                ),
                ("name".into(), "must not be empty".into()),
            ]
        })
        .unwrap_err();
        let keys: Vec<_> = e.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["name", "devices"], "{e}");
        assert!(e.problems[1].message.starts_with("invalid type"), "{e}");
    }

    #[test]
    fn a_column_counts_characters_not_bytes() {
        assert_eq!(line_column("é = 1\nkey", 8), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
