//! Fetching a server's tag catalogue once, for `smart-connector points`.

use crate::config::ConnectorConfig;
use crate::connector::source_specs;
use crate::source::run_source;
use po_protocol::TagInfo;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
#[error("no configured server delivered its catalogue within {timeout:?}; last problem: {last}")]
pub struct CatalogError {
    pub timeout: Duration,
    pub last: String,
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
    for spec in source_specs(config, &net) {
        let (ctx, crx) = mpsc::channel(1);
        keep.push(ctx);
        tasks.push(tokio::spawn(run_source(spec, crx, tx.clone())));
    }
    drop(tx);
    let mut last = "no attempt finished".to_string();
    let result = tokio::time::timeout(timeout, async {
        while let Some((_, msg)) = rx.recv().await {
            match msg {
                crate::source::SourceMsg::Connected { catalog, .. } => return Some(catalog),
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
        _ => Err(CatalogError { timeout, last }),
    }
}
