//! One page of the points list with live values (`/api/points` and the status page): a
//! large site is read page by page, optionally filtered by tag name.

use crate::api::{LivePoint, PointsPage};
use crate::image::RegisterImage;
use crate::points;
use po_protocol::{Quality, Value};
use serde::Deserialize;

/// Points per page when the request does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// The most points one request may ask for (about 300 bytes of JSON each).
pub const MAX_LIMIT: usize = 10_000;

/// `?offset=&limit=&filter=`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsQuery {
    /// Index of the first matching point to return (0-based).
    pub offset: Option<usize>,
    /// Points per page: 1 to `MAX_LIMIT`, default `DEFAULT_LIMIT`.
    pub limit: Option<usize>,
    /// Only tags whose name contains this text (case-insensitive).
    pub filter: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("limit must be between 1 and {MAX_LIMIT}, not {0}")]
    Limit(usize),
}

/// The page `q` asks for, with values as a master reads them now.
pub fn points_page(image: &RegisterImage, q: &PointsQuery) -> Result<PointsPage, QueryError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(QueryError::Limit(limit));
    }
    let offset = q.offset.unwrap_or(0);
    let map = image.map();
    let filter = q
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_lowercase);
    let matching = (0..map.points().len() as u32).filter(|i| {
        filter
            .as_deref()
            .is_none_or(|f| map.name(*i).to_lowercase().contains(f))
    });
    let now = image.clock().wall();
    let mut total = 0;
    let mut page = Vec::new();
    for index in matching {
        if total >= offset && page.len() < limit {
            let (value, quality, sampled) = image.live(index);
            page.push(LivePoint {
                row: points::row(map, index),
                value: match value {
                    Value::Analog(v) => v,
                    Value::Counter(v) => v as f64,
                    Value::Digital(b) => f64::from(u8::from(b)),
                },
                quality: quality_name(quality).to_string(),
                age_ms: sampled.map(|t| now.0.saturating_sub(t.0) / 1000),
            });
        }
        total += 1;
    }
    let next = offset.saturating_add(limit);
    Ok(PointsPage {
        total,
        offset,
        limit,
        next_offset: (next < total).then_some(next),
        points: page,
    })
}

pub fn quality_name(q: Quality) -> &'static str {
    match q {
        Quality::Good => "good",
        Quality::Uncertain => "uncertain",
        Quality::Bad => "bad",
        Quality::Stale => "stale",
    }
}
