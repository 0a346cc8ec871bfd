//! Where in a TOML file a problem is: the one helper that the connector's configuration
//! and the harness's scenario files use to name the line of a key or of an error.

/// The 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of `path` (table names then the key; arrays of tables as `name[i]`) in
/// `text`; failing the key itself, the line of its table's header.
pub fn find_line(text: &str, path: &[String]) -> Option<usize> {
    let (last, parents) = path.split_last()?;
    let strip = |s: &str| s.split('[').next().unwrap_or(s).to_string();
    let index_of = |s: &str| -> Option<usize> {
        s.split_once('[')
            .and_then(|(_, r)| r.trim_end_matches(']').parse().ok())
    };
    let want_table: Vec<String> = parents.iter().map(|s| strip(s)).collect();
    let want_index: Vec<Option<usize>> = parents.iter().map(|s| index_of(s)).collect();
    let mut current: Vec<String> = Vec::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    let mut current_index: Option<usize> = None;
    let last_name = strip(last);
    let last_index = index_of(last);
    let mut header_line = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(h) = t
            .strip_prefix("[[")
            .and_then(|h| h.split_once("]]").map(|x| x.0))
        {
            let c = counts.entry(h.trim().to_string()).or_insert(0);
            current = h.trim().split('.').map(|s| s.trim().to_string()).collect();
            current_index = Some(*c);
            *c += 1;
            // The key may be an array of tables itself (e.g. `source[1]`).
            if last_index.is_some() {
                let mut full = want_table.clone();
                full.push(last_name.clone());
                if current == full && current_index == last_index {
                    return Some(n + 1);
                }
            }
            if current == want_table && want_index.last().copied().flatten() == current_index {
                header_line = Some(n + 1);
            }
            continue;
        }
        if let Some(h) = t
            .strip_prefix('[')
            .and_then(|h| h.split_once(']').map(|x| x.0))
        {
            current = h.trim().split('.').map(|s| s.trim().to_string()).collect();
            current_index = None;
            let mut full = want_table.clone();
            full.push(last_name.clone());
            if current == full {
                return Some(n + 1);
            }
            if current == want_table {
                header_line = Some(n + 1);
            }
            continue;
        }
        let in_table = current == want_table
            && (want_index.last().copied().flatten().is_none()
                || want_index.last().copied().flatten() == current_index);
        if in_table
            && let Some((k, _)) = t.split_once('=')
            && k.trim().trim_matches('"') == last_name
        {
            return Some(n + 1);
        }
    }
    header_line
}

/// The table (`third_party`, `fault[1]`) a 1-based line belongs to.
pub fn table_at(text: &str, line: usize) -> Option<String> {
    let mut table = None;
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for t in text.lines().take(line) {
        let t = t.trim();
        if let Some(h) = t.strip_prefix("[[").and_then(|h| h.split_once("]]")) {
            let name = h.0.trim().to_string();
            let c = counts.entry(name.clone()).or_insert(0);
            table = Some(format!("{name}[{c}]"));
            *c += 1;
        } else if let Some(h) = t.strip_prefix('[').and_then(|h| h.split_once(']')) {
            table = Some(h.0.trim().to_string());
        }
    }
    table
}
