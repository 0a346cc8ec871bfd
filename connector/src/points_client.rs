//! `smart-connector points --from URL`: the points list read from a running connector's
//! `/api/points`, page by page (the client side of `points_page`).

use crate::api::PointsPage;
use crate::points::PointRow;
use crate::points_page::MAX_LIMIT;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "`{0}` is not an http:// URL (e.g. http://127.0.0.1:9100, the connector's metrics address)"
    )]
    Url(String),
    #[error("cannot read {url}")]
    Http {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("{url} did not answer with a points page: {reason}")]
    NotAPage { url: String, reason: String },
}

/// Reads the whole points list from a running connector's `/api/points`, page by page.
pub fn fetch_rows(base: &str, timeout: std::time::Duration) -> Result<Vec<PointRow>, FetchError> {
    let base = base.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(FetchError::Url(base.to_string()));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut rows = Vec::new();
    let mut offset = 0;
    loop {
        let url = format!("{base}/api/points?offset={offset}&limit={}", MAX_LIMIT);
        let text = agent
            .get(&url)
            .call()
            .and_then(|mut r| r.body_mut().with_config().limit(64 << 20).read_to_string())
            .map_err(|source| FetchError::Http {
                url: url.clone(),
                source,
            })?;
        let page: PointsPage = serde_json::from_str(&text).map_err(|e| FetchError::NotAPage {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        rows.extend(page.points.into_iter().map(|p| p.row));
        match page.next_offset {
            Some(next) if next > offset => offset = next,
            _ => return Ok(rows),
        }
    }
}
