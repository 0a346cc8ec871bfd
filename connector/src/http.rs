//! The HTTP listener on the metrics address (docs/design.md §14): the status page `/`, JSON at
//! `/api/status` and `/api/points`, Prometheus text at `/metrics`, and `/health` (200
//! while data is fresh, 503 when stale). Read-only; nothing secret is in any answer.
//!
//! Routing and HTTP/1.1 are axum's and hyper's; connections come from the workspace's
//! accept loop with its connection cap, so idle or slow clients cannot hold more than
//! `max_connections` descriptors, nor any of them for longer than twice `read_timeout`
//! (one request per connection); at the cap the oldest connection whose request is not in
//! yet makes room, so a scrape still gets through a flood. Pages of points are built on
//! the blocking pool: a request for a large site never holds up ingest or Modbus serving.

use crate::api::{ModbusDoc, PointsPage, PointsSummary, StatusDoc};
use crate::image::ServeState;
use crate::image_slot::ImageSlot;
use crate::metrics::Metrics;
use crate::points_page::{PointsQuery, points_page};
use crate::status::StatusBoard;
use crate::status_page::render_page;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use po_runtime::BoxListener;
use po_runtime::accept::accept_loop;
use po_runtime::admission::{ConnectionCap, Unproven, UnprovenTicket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The HTTP listener's limits (`[metrics]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub read_timeout: Duration,
}

/// What the pages show besides the live state: fixed at start.
#[derive(Debug, Clone)]
pub struct ConnectorInfo {
    pub name: String,
    pub modbus_listen: String,
    pub max_connections: usize,
}

/// Everything a request may read.
#[derive(Debug, Clone)]
pub struct HttpState {
    pub info: Arc<ConnectorInfo>,
    pub metrics: Arc<Metrics>,
    /// The image served now (the status block alone until the catalogue arrives).
    pub images: Arc<ImageSlot>,
    pub board: Arc<StatusBoard>,
    /// Whether the engine answers its liveness probe (`/healthz`).
    pub liveness: Arc<crate::liveness::Liveness>,
    /// The OPC UA face, when configured.
    pub opcua: Option<crate::opcua::OpcUaFace>,
}

/// The routes (public so tests can call them without a socket).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(api_status))
        .route("/api/points", get(api_points))
        .route("/metrics", get(prometheus))
        .route("/health", get(health))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: try /, /api/status, /api/points, /metrics, /health, /healthz or /readyz\n",
            )
        })
        .with_state(state)
}

/// Serves until `cancel` fires, then waits for the requests in progress.
pub async fn serve_http(
    listener: BoxListener,
    limits: HttpLimits,
    state: HttpState,
    cancel: CancellationToken,
) {
    let cap = ConnectionCap::new(limits.max_connections);
    let unproven = Unproven::default();
    let tracker = TaskTracker::new();
    let app = router(state.clone());
    accept_loop(
        &*listener,
        "HTTP",
        &cap,
        &unproven,
        &state.metrics.http_accept,
        cancel.clone().cancelled_owned(),
        |stream, _peer, permit, ticket| {
            let (app, cancel) = (app.clone(), cancel.clone());
            tracker.spawn(async move {
                let _permit = permit;
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = connection(stream, app, limits, ticket) => {}
                }
            });
        },
    )
    .await;
    tracker.close();
    tracker.wait().await;
}

/// One connection, one request: until the request head is in, the connection may be
/// closed to make room; the whole exchange is bounded by twice `read_timeout`.
async fn connection(
    stream: po_runtime::BoxStream,
    app: Router,
    limits: HttpLimits,
    ticket: UnprovenTicket,
) {
    let (proved_tx, mut proved) = oneshot::channel::<()>();
    let proved_tx = Arc::new(Mutex::new(Some(proved_tx)));
    let service =
        tower::ServiceExt::map_request(app, move |req: hyper::Request<hyper::body::Incoming>| {
            if let Some(tx) = proved_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            req
        });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let bounded = tokio::time::timeout(limits.read_timeout * 2, conn);
    tokio::pin!(bounded);
    let mut ticket = Some(ticket);
    loop {
        tokio::select! {
            _ = &mut bounded => return,
            _ = async { ticket.as_ref().unwrap().evicted().await }, if ticket.is_some() => return,
            _ = &mut proved, if ticket.is_some() => ticket = None,
        }
    }
}

async fn prometheus(State(s): State<HttpState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn health(State(s): State<HttpState>) -> Response {
    if s.images.current().is_stale() {
        (StatusCode::SERVICE_UNAVAILABLE, "stale\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// Liveness for a service manager or an orchestrator: the process answers HTTP, and its
/// engine is not stuck (the same test as the watchdog, docs/service.md).
async fn healthz(State(s): State<HttpState>) -> Response {
    match s.liveness.stuck() {
        None => (StatusCode::OK, "alive\n").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

/// Readiness for a load balancer: 200 while data is served (a Primary's or, with
/// `serve_standby`, a Standby's), else 503 with the reason `/api/status` gives.
async fn readyz(State(s): State<HttpState>) -> Response {
    let doc = status_doc(&s);
    match doc.reason {
        None => (
            StatusCode::OK,
            format!("ready: serving {} data\n", doc.state),
        )
            .into_response(),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready ({}): {why}\n", doc.state),
        )
            .into_response(),
    }
}

async fn api_status(State(s): State<HttpState>) -> Json<StatusDoc> {
    Json(status_doc(&s))
}

async fn api_points(
    State(s): State<HttpState>,
    Query(q): Query<PointsQuery>,
) -> Result<Json<PointsPage>, Response> {
    blocking_page(&s, q).await.map(Json)
}

async fn page(State(s): State<HttpState>, Query(q): Query<PointsQuery>) -> Response {
    let status = status_doc(&s);
    match blocking_page(&s, q.clone()).await {
        Ok(points) => Html(render_page(&status, &points, &q)).into_response(),
        Err(e) => e,
    }
}

/// Builds a page of points off the runtime's threads (a filter scans every tag name).
async fn blocking_page(s: &HttpState, q: PointsQuery) -> Result<PointsPage, Response> {
    let image = s.images.current().clone();
    match tokio::task::spawn_blocking(move || points_page(&image, &q)).await {
        Ok(Ok(page)) => Ok(page),
        Ok(Err(bad)) => Err((StatusCode::BAD_REQUEST, format!("{bad}\n")).into_response()),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

/// The `/api/status` document, from the board, the image and the counters.
pub fn status_doc(s: &HttpState) -> StatusDoc {
    let (image, catalogue_missing) = s.images.current_and_starting();
    let (state, _) = image.serving();
    let state = match state {
        x if x == ServeState::Primary as u8 => "primary",
        x if x == ServeState::Standby as u8 => "standby",
        x if x == ServeState::Stale as u8 => "stale",
        x if x == ServeState::Draining as u8 => "draining",
        _ => "starting",
    };
    let sources = s.board.sources();
    let reason = not_serving_reason(state, catalogue_missing, &sources);
    let switches = s.board.switches();
    let active = image
        .active()
        .map(|(index, role, epoch)| crate::api::ActiveDoc {
            index,
            source: s.board.source_name(index.saturating_sub(1)),
            role: crate::status::role_name(role),
            epoch,
        });
    StatusDoc {
        connector: s.info.name.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: s.board.uptime().as_millis() as u64,
        state: state.to_string(),
        reason,
        service_level: image.service_level(),
        active,
        switches_total: s.metrics.source_switches.load(Relaxed),
        switches,
        sources,
        modbus: ModbusDoc {
            listen: s.info.modbus_listen.clone(),
            unit_ids: image.map().banks().iter().map(|b| b.unit_id).collect(),
            max_connections: s.info.max_connections,
            clients: s.board.clients(),
            requests_total: s.metrics.modbus_requests.load(Relaxed),
            exceptions_total: s
                .metrics
                .modbus_exceptions
                .iter()
                .map(|c| c.load(Relaxed))
                .sum(),
        },
        opcua: s.opcua.as_ref().map(|o| o.doc(image.service_level())),
        points: PointsSummary {
            total: image.map().points().len(),
            not_good: image.tags_not_good(),
            data_age_ms: image
                .data_age(image.clock().wall())
                .map(|d| d.as_millis() as u64),
        },
    }
}

/// Why no data is served, in words a user can act on; `None` while serving.
fn not_serving_reason(
    state: &str,
    catalogue_missing: bool,
    sources: &[crate::api::SourceDoc],
) -> Option<String> {
    let heard = || {
        let each: Vec<String> = sources
            .iter()
            .map(|src| match (&src.last_error, src.connected) {
                (_, true) => format!("{}: connected", src.name),
                (Some(e), false) => format!("{}: {e}", src.name),
                (None, false) => format!("{}: no answer yet", src.name),
            })
            .collect();
        each.join("; ")
    };
    match state {
        "primary" | "standby" => None,
        "draining" => {
            Some("shutting down (SIGTERM): third parties should move to the peer connector".into())
        }
        _ if catalogue_missing => Some(format!(
            "no server has delivered a tag catalogue yet ({})",
            heard()
        )),
        "stale" => Some(format!(
            "no healthy source: serving stale data ({})",
            heard()
        )),
        // Catalogue in hand but no source chosen: at start before the first snapshot,
        // or after losing every source until `stale_after` marks the data stale.
        _ => Some(format!("no healthy source serving data ({})", heard())),
    }
}
