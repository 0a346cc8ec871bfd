//! The status page at `/`: the same facts as `/api/status` plus a page of points, as one
//! self-contained HTML document (inline CSS, a few lines of inline script, nothing from
//! the network). The script refreshes the live parts every two seconds by fetching the
//! page again; without script a `<noscript>` meta refresh does the same.

use crate::api::{PointsPage, StatusDoc};
use crate::points_page::PointsQuery;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use std::fmt::Write as _;

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
header{background:#1d2430;color:#fff;padding:12px 20px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
main{padding:8px 20px 24px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:14px 0;padding:10px 14px}
h2{font-size:15px;margin:4px 0 8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eceef2;font-variant-numeric:tabular-nums}
th{font-weight:600;color:#4a5568}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
.primary,.healthy,.good{background:#d4f4dd;color:#17612d}
.standby,.uncertain{background:#fdf1c7;color:#7a5a00}
.stale,.disconnected,.silent,.bad,.catalogue-differs{background:#fbdada;color:#8b1c1c}
.starting{background:#e2e8f0;color:#334}
.muted{color:#718096}
form{margin:0 0 8px}
nav a{margin-right:12px}
"#;

const SCRIPT: &str = r#"
let busy = false;
setInterval(async () => {
  // One refresh at a time: a slow answer is not overtaken by (or stacked under) the next.
  if (busy) return;
  busy = true;
  try {
    const r = await fetch(location.href, {cache: "no-store"});
    if (!r.ok) throw new Error(r.status);
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    for (const id of ["live", "points-live"]) {
      document.getElementById(id).replaceWith(doc.getElementById(id));
    }
    document.getElementById("reach").textContent = "";
    document.body.dataset.refreshes = Number(document.body.dataset.refreshes || 0) + 1;
  } catch (e) {
    document.getElementById("reach").textContent = "connector unreachable";
  } finally {
    busy = false;
  }
}, 2000);
"#;

fn badge(class: &str) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        attr(&class.replace(' ', "-")),
        text(class)
    )
}

fn ms(v: Option<u64>) -> String {
    match v {
        None => "never".to_string(),
        Some(ms) if ms < 10_000 => format!("{ms} ms"),
        Some(ms) => format!("{:.0} s", ms as f64 / 1000.0),
    }
}

fn duration(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
}

/// A link to another page of points, keeping the filter.
fn page_link(q: &PointsQuery, offset: usize, limit: usize) -> String {
    let mut url = format!("/?offset={offset}&limit={limit}");
    if let Some(f) = q.filter.as_deref().filter(|f| !f.is_empty()) {
        url.push_str("&filter=");
        for b in f.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                url.push(b as char);
            } else {
                let _ = write!(url, "%{b:02X}");
            }
        }
    }
    url
}

pub fn render_page(s: &StatusDoc, points: &PointsPage, q: &PointsQuery) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\
         <title>{} · Smart Connector</title><style>{STYLE}</style></head><body>",
        text(&s.connector)
    );
    let _ = write!(
        h,
        "<header><h1>Smart Connector {}</h1><span>version {}</span>\
         <nav><a style=\"color:#9cf\" href=\"/api/status\">/api/status</a>\
         <a style=\"color:#9cf\" href=\"/api/points\">/api/points</a>\
         <a style=\"color:#9cf\" href=\"/metrics\">/metrics</a></nav>\
         <span id=\"reach\" style=\"color:#f99\"></span></header>",
        text(&s.connector),
        text(&s.version)
    );
    h.push_str("<main><div id=\"live\">");
    // Summary.
    let active = match &s.active {
        Some(a) => format!("{} ({}, epoch {})", text(&a.source), text(&a.role), a.epoch),
        None => "none".to_string(),
    };
    let _ = write!(
        h,
        "<section id=\"summary\"><h2>Serving {}</h2><table><tr><th>Active source</th><td>{active}</td>\
         <th>Uptime</th><td>{}</td><th>Switches between servers</th><td>{}</td></tr>\
         <tr><th>Service level</th><td id=\"service-level\">{}</td><td colspan=\"4\"></td></tr>{}\
         <tr><th>Points</th><td>{} ({} not good)</td><th>Data age</th><td>{}</td>\
         <th>Modbus</th><td>{} · unit ids {} · {} requests · {} exceptions</td></tr></table></section>",
        badge(&s.state),
        duration(s.uptime_ms),
        s.switches_total,
        s.service_level,
        match &s.reason {
            Some(why) => format!(
                "<tr><th>Not serving</th><td colspan=\"5\" id=\"reason\">{}</td></tr>",
                text(why)
            ),
            None => String::new(),
        },
        s.points.total,
        s.points.not_good,
        ms(s.points.data_age_ms),
        text(&s.modbus.listen),
        s.modbus
            .unit_ids
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        s.modbus.requests_total,
        s.modbus.exceptions_total,
    );
    // Sources.
    h.push_str(
        "<section id=\"sources\"><h2>Servers</h2><table><tr><th>#</th><th>Name</th><th>Address</th>\
         <th>Access</th><th>Health</th><th>Role</th><th>Epoch</th><th>Last heard</th>\
         <th>Sessions</th><th>Last error</th></tr>",
    );
    for src in &s.sources {
        let access = match &src.licence {
            Some(l) => format!("client access, licence {}", text(l)),
            None => "local".to_string(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{access}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{} connects, {} losses</td><td class=\"muted\">{}</td></tr>",
            src.index,
            text(&src.name),
            text(&src.address),
            badge(&src.health),
            src.role.as_deref().map(badge).unwrap_or_default(),
            src.epoch,
            ms(src.last_heard_ms),
            src.connects,
            src.losses,
            text(src.last_error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table></section>");
    // Switches.
    let _ = write!(
        h,
        "<section id=\"switches\"><h2>Changes of the active source ({} {} between servers in all)</h2>",
        s.switches_total,
        if s.switches_total == 1 {
            "switch"
        } else {
            "switches"
        }
    );
    if s.switches.is_empty() {
        h.push_str("<p class=\"muted\">none yet</p>");
    } else {
        h.push_str("<table><tr><th>At uptime</th><th>Kind</th><th>From</th><th>To</th><th>Reason</th></tr>");
        let side = |a: &Option<crate::api::ActiveDoc>| match a {
            Some(a) => format!("{} ({}, epoch {})", text(&a.source), text(&a.role), a.epoch),
            None => "none".to_string(),
        };
        for sw in &s.switches {
            let _ = write!(
                h,
                "<tr><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                sw.uptime_ms as f64 / 1000.0,
                text(&sw.kind),
                side(&sw.from),
                side(&sw.to),
                text(&sw.reason)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
    // Modbus clients.
    let _ = write!(
        h,
        "<section id=\"clients\"><h2>Modbus masters ({} of at most {})</h2>",
        s.modbus.clients.len(),
        s.modbus.max_connections
    );
    if s.modbus.clients.is_empty() {
        h.push_str("<p class=\"muted\">none connected</p>");
    } else {
        h.push_str("<table><tr><th>Address</th><th>Connected for</th><th>Requests</th></tr>");
        for c in &s.modbus.clients {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&c.address),
                duration(c.connected_ms),
                c.requests
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
    if let Some(ua) = &s.opcua {
        opcua_section(&mut h, ua);
    }
    h.push_str("</div>");
    // Points: the filter form stays outside the refreshed part, so typing is not undone.
    let _ = write!(
        h,
        "<section id=\"points\"><h2>Points</h2><form method=\"get\" action=\"/\">\
         <input name=\"filter\" placeholder=\"filter by tag name\" value=\"{}\">\
         <input type=\"hidden\" name=\"limit\" value=\"{}\"> <button>Filter</button></form>",
        attr(q.filter.as_deref().unwrap_or("")),
        points.limit
    );
    h.push_str("<div id=\"points-live\">");
    let first = if points.points.is_empty() {
        0
    } else {
        points.offset + 1
    };
    let _ = write!(
        h,
        "<p>{first}–{} of {}",
        points.offset + points.points.len(),
        points.total
    );
    if points.offset > 0 {
        let prev = points.offset.saturating_sub(points.limit);
        let _ = write!(
            h,
            " · <a href=\"{}\">previous</a>",
            attr(&page_link(q, prev, points.limit))
        );
    }
    if let Some(next) = points.next_offset {
        let _ = write!(
            h,
            " · <a href=\"{}\">next</a>",
            attr(&page_link(q, next, points.limit))
        );
    }
    h.push_str(
        "</p><table><tr><th>Tag</th><th>Unit id</th><th>Register</th><th>Type</th><th>Value</th><th>Unit</th>\
         <th>Quality</th><th>Age</th><th>Access</th></tr>",
    );
    for p in &points.points {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&p.row.tag),
            p.row.unit_id,
            p.row.address,
            text(&p.row.data_type),
            // A float32 register pair holds an f32: show it at that precision.
            if p.row.data_type == "float32" {
                (p.value as f32).to_string()
            } else {
                p.value.to_string()
            },
            text(&p.row.unit),
            badge(&p.quality),
            ms(p.age_ms),
            text(&p.row.access),
        );
    }
    h.push_str("</table></div></section></main>");
    let _ = write!(h, "<script>{SCRIPT}</script></body></html>");
    h
}

/// The OPC UA server: its ServiceLevel and who is connected (docs/opcua.md "Seen").
fn opcua_section(h: &mut String, ua: &crate::api::OpcUaDoc) {
    let _ = write!(
        h,
        "<section id=\"opcua\"><h2>OPC UA clients ({} sessions, {} subscriptions, {} monitored items)</h2>\
         <p>opc.tcp://{}/ as {} &mdash; ServiceLevel <b>{}</b>, {} notifications sent</p>",
        ua.sessions.len(),
        ua.subscriptions,
        ua.monitored_items,
        text(&ua.listen),
        text(&ua.application_uri),
        ua.service_level,
        ua.notifications_total
    );
    if ua.sessions.is_empty() {
        h.push_str("<p class=\"muted\">no session open</p>");
    } else {
        h.push_str("<table><tr><th>Application</th><th>Security</th><th>User</th><th>Role</th><th>Subscriptions</th><th>Monitored items</th></tr>");
        for c in &ua.sessions {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&c.application),
                text(&c.security_policy),
                text(&c.security_mode),
                text(&c.user),
                text(&c.role),
                c.subscriptions,
                c.monitored_items
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</section>");
}
