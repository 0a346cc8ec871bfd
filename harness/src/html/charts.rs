//! The charts of the HTML reports, drawn with plotters' SVG backend into strings: line
//! charts over time or over a numeric axis, band timelines, grouped bars. Every chart is
//! a complete `<svg>` element; the page embeds it as is.

use crate::timeline::{ConnectorState, FaultMark, ServerState, Serving, Timeline};
use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Width of every chart, px.
pub const WIDTH: u32 = 960;
const FONT: &str = "sans-serif";
/// Width of the row names left of a band timeline, px.
const ROW_NAMES: u32 = 150;

pub const PRIMARY: RGBColor = RGBColor(102, 187, 106);
pub const STANDBY: RGBColor = RGBColor(100, 181, 246);
pub const STALE: RGBColor = RGBColor(255, 183, 77);
pub const STARTING: RGBColor = RGBColor(224, 224, 224);
pub const DOWN: RGBColor = RGBColor(189, 189, 189);
pub const FAULT: RGBColor = RGBColor(211, 47, 47);
const GRID: RGBColor = RGBColor(224, 224, 224);

/// Series colours, in order.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

/// plotters' errors carry the backend's error type; the report only needs the message.
fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// A number with a k/M suffix for axis labels.
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// One line: points in order; `None` breaks the line (no data there).
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<Option<(f64, f64)>>,
    /// Drawn dashed (a baseline, or a reference).
    pub dashed: bool,
    /// A circle on each point (few points: a sweep).
    pub marks: bool,
}

/// The unbroken runs of a line's points.
fn runs(points: &[Option<(f64, f64)>]) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![vec![]];
    for p in points {
        match p {
            Some(p) => out.last_mut().expect("one run at least").push(*p),
            None if out.last().is_some_and(|r| !r.is_empty()) => out.push(vec![]),
            None => {}
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

/// The axes of a line chart.
#[derive(Debug, Clone)]
pub struct Axes {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub x: std::ops::Range<f64>,
    /// Logarithmic x axis (a sweep over rates spanning decades).
    pub x_log: bool,
    pub height: u32,
}

/// A line chart; `faults` become vertical markers with their labels.
pub fn line_chart(axes: &Axes, lines: &[Line], faults: &[FaultMark]) -> Result<String> {
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().flatten().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, axes.height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        if axes.x_log {
            let x =
                (axes.x.start.max(1.0)..axes.x.end.max(axes.x.start.max(1.0) * 10.0)).log_scale();
            let mut chart = builder(&root, &axes.title)
                .build_cartesian_2d(x, 0f64..y_max)
                .map_err(err)?;
            chart
                .configure_mesh()
                .bold_line_style(GRID)
                .light_line_style(TRANSPARENT)
                .x_desc(axes.x_desc.as_str())
                .y_desc(axes.y_desc.as_str())
                .x_label_formatter(&|v| si(*v))
                .y_label_formatter(&|v| si(*v))
                .draw()
                .map_err(err)?;
            draw_lines(&mut chart, lines)?;
        } else {
            let mut chart = builder(&root, &axes.title)
                .build_cartesian_2d(axes.x.clone(), 0f64..y_max)
                .map_err(err)?;
            chart
                .configure_mesh()
                .bold_line_style(GRID)
                .light_line_style(TRANSPARENT)
                .x_desc(axes.x_desc.as_str())
                .y_desc(axes.y_desc.as_str())
                .y_label_formatter(&|v| si(*v))
                .draw()
                .map_err(err)?;
            draw_lines(&mut chart, lines)?;
            for f in faults {
                chart
                    .draw_series(fault_marker(f, 0.0, y_max))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

fn builder<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'a, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    b
}

fn draw_lines<'a, X>(
    chart: &mut ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    lines: &[Line],
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
{
    let mut any_label = false;
    for l in lines {
        let style = ShapeStyle::from(&l.color).stroke_width(2);
        let mut labelled = false;
        for run in runs(&l.points) {
            let anno = if l.dashed {
                chart
                    .draw_series(DashedLineSeries::new(run.clone(), 8, 5, style))
                    .map_err(err)?
            } else {
                chart
                    .draw_series(LineSeries::new(run.clone(), style))
                    .map_err(err)?
            };
            if !labelled {
                let color = l.color;
                anno.label(l.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
                labelled = true;
                any_label = true;
            }
            if l.marks {
                chart
                    .draw_series(
                        run.iter()
                            .map(|p| Circle::new(*p, 3, ShapeStyle::from(&l.color).filled())),
                    )
                    .map_err(err)?;
            }
        }
    }
    if any_label {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// A vertical line at the fault with its label at the top.
fn fault_marker<DB: DrawingBackend>(
    f: &FaultMark,
    y0: f64,
    y1: f64,
) -> Vec<DynElement<'static, DB, (f64, f64)>> {
    let style = TextStyle::from((FONT, 12).into_font())
        .color(&FAULT)
        .pos(Pos::new(HPos::Left, VPos::Top));
    vec![
        PathElement::new(vec![(f.at_s, y0), (f.at_s, y1)], FAULT.stroke_width(2)).into_dyn(),
        Text::new(format!(" {}", f.fault), (f.at_s, y1), style).into_dyn(),
    ]
}

/// One row of a band timeline: (from, to, colour, label) per band.
type Row = (String, Vec<(f64, f64, RGBColor, String)>);

fn server_band(s: &ServerState) -> (RGBColor, String) {
    match (s.role, s.epoch) {
        (Some(r), Some(e)) => (
            if r == po_protocol::Role::Primary {
                PRIMARY
            } else {
                STANDBY
            },
            format!("{r} · e{e}"),
        ),
        _ => (DOWN, "down".into()),
    }
}

fn connector_band(c: &ConnectorState) -> (RGBColor, String) {
    let color = match c.state {
        Serving::Primary => PRIMARY,
        Serving::Standby => STANDBY,
        Serving::Stale => STALE,
        Serving::Starting => STARTING,
        Serving::Unreachable => DOWN,
    };
    let label = match (&c.source, c.state) {
        (_, Serving::Unreachable) => "unreachable".to_string(),
        (Some(src), _) => {
            let role = c.role.map_or("?".to_string(), |r| r.to_string());
            let epoch = c.epoch.map_or(String::new(), |e| format!(" · e{e}"));
            format!("{src} · {role}{epoch}")
        }
        (None, Serving::Starting) => "starting".into(),
        (None, _) => "no source: stale".into(),
    };
    // The service level an OPC UA client follows (register 14 = Server.ServiceLevel).
    let label = match (c.service_level, c.state) {
        (Some(l), s) if s != Serving::Unreachable => format!("{label} · SL {l}"),
        _ => label,
    };
    (color, label)
}

/// The rows of a timeline: each server, then each connector.
pub fn rows(tl: &Timeline) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for s in &tl.servers {
        let bands = s
            .bands
            .iter()
            .map(|b| {
                let (c, l) = server_band(&b.state);
                (b.from_s, b.to_s, c, l)
            })
            .collect();
        rows.push((format!("server {}", s.name), bands));
    }
    for s in &tl.connectors {
        let bands = s
            .bands
            .iter()
            .map(|b| {
                let (c, l) = connector_band(&b.state);
                (b.from_s, b.to_s, c, l)
            })
            .collect();
        rows.push((format!("connector {}", s.name), bands));
    }
    rows
}

/// Bands per server (role, epoch) and per connector (source, role, epoch), with faults.
pub fn band_chart(tl: &Timeline, x_max: f64) -> Result<String> {
    let rows = rows(tl);
    let n = rows.len().max(1);
    let height = 90 + 44 * n as u32;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Roles and active sources", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(ROW_NAMES)
            .build_cartesian_2d(0f64..x_max, 0f64..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .y_labels(0)
            .x_desc("s since the start of the measured run")
            .draw()
            .map_err(err)?;
        let px_per_s = f64::from(WIDTH - ROW_NAMES - 24) / x_max.max(0.001);
        let label_style = TextStyle::from((FONT, 12).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        for (i, (_, bands)) in rows.iter().enumerate() {
            let top = (n - i) as f64 - 0.12;
            let bottom = (n - i - 1) as f64 + 0.12;
            let mid = (top + bottom) / 2.0;
            chart
                .draw_series(bands.iter().map(|(from, to, color, _)| {
                    Rectangle::new([(*from, bottom), (*to, top)], color.filled())
                }))
                .map_err(err)?;
            // Boundaries stay visible between bands of one colour (a new epoch).
            chart
                .draw_series(bands.iter().map(|(from, to, _, _)| {
                    Rectangle::new([(*from, bottom), (*to, top)], WHITE.stroke_width(1))
                }))
                .map_err(err)?;
            chart
                .draw_series(
                    bands
                        .iter()
                        .filter(|(from, to, _, label)| {
                            (to - from) * px_per_s > 7.0 * label.chars().count() as f64 + 6.0
                        })
                        .map(|(from, to, _, label)| {
                            Text::new(label.clone(), ((from + to) / 2.0, mid), label_style.clone())
                        }),
                )
                .map_err(err)?;
        }
        for f in &tl.faults {
            chart
                .draw_series(fault_marker(f, 0.0, n as f64))
                .map_err(err)?;
        }
        // Row names, left of the plot, level with their rows.
        let name_style = TextStyle::from((FONT, 13).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (i, (name, _)) in rows.iter().enumerate() {
            let (_, y) = chart.backend_coord(&(0.0, (n - i) as f64 - 0.5));
            root.draw(&Text::new(name.clone(), (14, y), name_style.clone()))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

/// One bar group: a category with a value per series (`None`: no bar).
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// Grouped vertical bars: one group per category, one bar per series (e.g. new and
/// baseline side by side).
pub fn bar_chart(
    title: &str,
    y_desc: &str,
    series: &[(String, RGBColor)],
    groups: &[Group],
) -> Result<String> {
    let n = groups.len().max(1);
    let k = series.len().max(1);
    let y_max = groups
        .iter()
        .flat_map(|g| g.values.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    // Room above the bars for the legend.
    let y_max = if y_max > 0.0 { y_max * 1.35 } else { 1.0 };
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(56)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..n as f64, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .x_labels(0)
            .y_desc(y_desc)
            .y_label_formatter(&|v| si(*v))
            .draw()
            .map_err(err)?;
        let width = 0.8 / k as f64;
        let value_style = TextStyle::from((FONT, 11).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        for (s, (name, color)) in series.iter().enumerate() {
            let bars: Vec<(f64, f64)> = groups
                .iter()
                .enumerate()
                .filter_map(|(i, g)| {
                    g.values
                        .get(s)
                        .copied()
                        .flatten()
                        .map(|v| (i as f64 + 0.1 + width * s as f64, v))
                })
                .collect();
            let color = *color;
            chart
                .draw_series(
                    bars.iter()
                        .map(|(x, v)| Rectangle::new([(*x, 0.0), (x + width, *v)], color.filled())),
                )
                .map_err(err)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart
                .draw_series(
                    bars.iter().map(|(x, v)| {
                        Text::new(si(*v), (x + width / 2.0, *v), value_style.clone())
                    }),
                )
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
        let name_style = TextStyle::from((FONT, 12).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        // Group names under their bars, a line per ` · `-separated part.
        for (i, g) in groups.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            for (j, part) in g.name.split(" · ").enumerate() {
                root.draw(&Text::new(
                    part.to_string(),
                    (x, y + 8 + 15 * j as i32),
                    name_style.clone(),
                ))
                .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_points_break_a_line() {
        let p = [
            Some((0.0, 1.0)),
            Some((1.0, 2.0)),
            None,
            None,
            Some((3.0, 1.0)),
            None,
        ];
        assert_eq!(
            runs(&p),
            vec![vec![(0.0, 1.0), (1.0, 2.0)], vec![(3.0, 1.0)]]
        );
        assert_eq!(si(82_505.0), "83k");
        assert_eq!(si(1_240_000.0), "1.2M");
        assert_eq!(si(96.0), "96");
    }
}
