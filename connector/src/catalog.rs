//! Fetching a server's tag catalogue once, for `smart-connector points`; and the digest
//! that tells whether two servers have the same catalogue without keeping either.

use crate::config::ConnectorConfig;
use crate::source::{run_source, source_specs};
use po_protocol::TagInfo;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "no configured server delivered its catalogue within {timeout:?}; last problem: {last}"
    )]
    NoCatalog { timeout: Duration, last: String },
    #[error("tls: {0}")]
    Tls(#[from] po_runtime::tls::TlsSetupError),
}

/// Connects to the configured servers (as the connector would) and returns the first
/// catalogue delivered.
pub async fn fetch(
    config: &ConnectorConfig,
    timeout: Duration,
) -> Result<Vec<TagInfo>, CatalogError> {
    let (tx, mut rx) = mpsc::channel(16);
    let mut tasks = Vec::new();
    let mut keep = Vec::new();
    let net: std::sync::Arc<dyn po_runtime::Net> = std::sync::Arc::new(po_runtime::TokioNet);
    let clock: std::sync::Arc<dyn po_runtime::Clock> = std::sync::Arc::new(po_runtime::SystemClock);
    for spec in source_specs(config, &net, &clock)? {
        let (ctx, crx) = mpsc::channel(1);
        keep.push(ctx);
        tasks.push(tokio::spawn(run_source(spec, crx, tx.clone())));
    }
    drop(tx);
    let mut last = "no attempt finished".to_string();
    let result = tokio::time::timeout(timeout, async {
        while let Some((_, msg)) = rx.recv().await {
            match msg {
                crate::source::SourceMsg::Connected { catalog, .. } => {
                    return Some(std::sync::Arc::unwrap_or_clone(catalog));
                }
                crate::source::SourceMsg::Lost { reason } => last = reason,
                _ => {}
            }
        }
        None
    })
    .await;
    for t in tasks {
        t.abort();
    }
    match result {
        Ok(Some(c)) => Ok(c),
        _ => Err(CatalogError::NoCatalog { timeout, last }),
    }
}

/// A fingerprint of a catalogue: the engine keeps this instead of the catalogue itself
/// (at a million tags the catalogue is about 100 MB; the register map keeps what it needs).
pub fn digest(tags: &[TagInfo]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    tags.len().hash(&mut h);
    for t in tags {
        t.id.hash(&mut h);
        t.name.hash(&mut h);
        t.unit.hash(&mut h);
        t.kind.hash(&mut h);
        t.writable.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use po_protocol::{TagId, TagKind};

    #[test]
    fn the_digest_changes_with_any_field() {
        let base = vec![TagInfo {
            id: TagId(0),
            name: "A.kW".into(),
            unit: "kW".into(),
            kind: TagKind::Analog,
            writable: false,
        }];
        let d = digest(&base);
        assert_eq!(d, digest(&base.clone()));
        let mut changes: Vec<Vec<TagInfo>> = vec![vec![], vec![base[0].clone(), base[0].clone()]];
        for f in 0..5 {
            let mut c = base.clone();
            match f {
                0 => c[0].id = TagId(1),
                1 => c[0].name = "A.kVAr".into(),
                2 => c[0].unit = "W".into(),
                3 => c[0].kind = TagKind::Counter,
                _ => c[0].writable = true,
            }
            changes.push(c);
        }
        for c in changes {
            assert_ne!(digest(&c), d, "{c:?}");
        }
    }
}
