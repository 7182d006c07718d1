//! The HTML report (`report.html` beside summary.json): one self-contained page, no external
//! assets, with the terminal summary's content as tables and the per-second timeline drawn as
//! inline SVG plots (made with `plotters`).
//!
//! The chart and page helpers here are shared with [`crate::compare`].

use std::fmt::Write as _;

use plotters::prelude::*;
use plotters::style::RGBColor;
use protocol::result_code::ResultCode;

use crate::gateway_latency::Leg;
use crate::report::{Percentiles, Report};
use crate::run::Second;

/// Line colours, one per series (or per run in `loadgen compare`).
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// The page's style sheet (inline: the page must open from a CI artifact with no network).
pub(crate) const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f2f2; text-align: left; }
td.nw { white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #176b1e; font-weight: bold; }
.fail { color: #b00020; font-weight: bold; }
.badge { display: inline-block; padding: 0.1em 0.6em; border-radius: 0.3em; color: #fff; font-size: 0.8em; vertical-align: middle; }
.badge.pass { background: #2e7d32; color: #fff; }
.badge.fail { background: #c62828; color: #fff; }
.plot svg { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { color: #666; font-size: 0.9em; }
footer { margin-top: 2em; border-top: 1px solid #ccc; color: #555; font-size: 0.85em; }
";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Microseconds as milliseconds with two decimals.
pub(crate) fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// One line of a chart: a name for the legend, a colour, and (x, y) points; a NaN `y` is a
/// gap (a second with nothing to measure), so the line is not drawn through it.
pub(crate) struct Series {
    /// Legend text.
    pub name: String,
    /// Line colour.
    pub color: RGBColor,
    /// Points; NaN y = gap.
    pub points: Vec<(f64, f64)>,
}

/// How a chart's y axis is drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    /// Whole numbers (requests, sessions): integer ticks, at least 0..5.
    Count,
    /// Linear, any value.
    Linear,
    /// Logarithmic: zero and negative values are gaps.
    Log,
}

/// A vertical line across a chart at `x` (a timeline event), or a shaded band from `x` to
/// `until` (a threshold window), with a short label.
#[derive(Clone, Debug)]
pub(crate) struct Marker {
    /// Seconds since traffic started.
    pub x: f64,
    /// The label drawn beside the line's top.
    pub label: String,
    /// The end of a band (a window), seconds since traffic started; None: a line.
    pub until: Option<f64>,
}

/// The colour of event markers.
const MARKER: RGBColor = RGBColor(110, 60, 160);
/// The colour of window bands (drawn translucent).
const WINDOW: RGBColor = RGBColor(230, 150, 30);

/// A line chart as an inline `<svg>` element (or a note saying why there is none).
pub(crate) fn line_chart(title: &str, y_desc: &str, series: &[Series], scale: Scale) -> String {
    line_chart_marked(title, y_desc, series, scale, &[])
}

/// A line chart with event markers (vertical lines).
pub(crate) fn line_chart_marked(
    title: &str,
    y_desc: &str,
    series: &[Series],
    scale: Scale,
    markers: &[Marker],
) -> String {
    let log_y = scale == Scale::Log;
    let finite = |y: f64| y.is_finite() && (!log_y || y > 0.0);
    let points = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|(_, y)| finite(*y))
    };
    if points().next().is_none() {
        return format!(
            "<p class=\"note\">{}: no data (the run had no full second of traffic).</p>\n",
            escape(title)
        );
    }
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(markers.iter().map(|m| m.until.unwrap_or(m.x).ceil()))
        .fold(1.0f64, f64::max);
    let y_max = points().map(|p| p.1).fold(0.0f64, f64::max);
    let result = if log_y {
        let y_min = points().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let (lo, hi) = (y_min / 1.5, (y_max * 1.5).max(y_min * 2.0));
        let frame = Frame {
            x_max,
            y: (lo, hi),
            log_y: true,
            y_labels: 12,
        };
        draw_chart(title, y_desc, series, markers, frame, (lo..hi).log_scale())
    } else {
        let hi = match scale {
            Scale::Count => (y_max * 1.1).max(5.0).ceil(),
            _ if y_max > 0.0 => y_max * 1.1,
            _ => 1.0,
        };
        // Integer ticks for counts: no more labels than whole numbers in the range.
        let labels = match scale {
            Scale::Count => (hi as usize + 1).clamp(2, 10),
            _ => 10,
        };
        let frame = Frame {
            x_max,
            y: (0.0, hi),
            log_y: false,
            y_labels: labels,
        };
        draw_chart(title, y_desc, series, markers, frame, 0.0..hi)
    };
    match result {
        Ok(svg) => format!("<div class=\"plot\">{svg}</div>\n"),
        Err(error) => format!(
            "<p class=\"note\">{}: the plot could not be drawn ({}).</p>\n",
            escape(title),
            escape(&error)
        ),
    }
}

/// A number for an axis label: no trailing noise, k/M for large values.
fn axis_label(value: f64) -> String {
    let a = value.abs();
    if a >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if a >= 100.0 || a == 0.0 || (a - a.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else if a >= 1.0 {
        format!("{value:.1}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').to_owned()
    }
}

/// The leading digit of a positive value that is a whole multiple of a power of ten.
fn leading_digit(value: f64) -> Option<u32> {
    if value <= 0.0 || !value.is_finite() {
        return None;
    }
    let mantissa = value / 10f64.powf(value.log10().floor());
    let digit = mantissa.round();
    ((mantissa - digit).abs() < 1e-6).then_some(digit as u32)
}

/// A chart's axes: x from 0 to `x_max`, y over `y` (the same range as the coordinate
/// specification passed beside it).
struct Frame {
    x_max: f64,
    y: (f64, f64),
    log_y: bool,
    y_labels: usize,
}

fn draw_chart<Y>(
    title: &str,
    y_desc: &str,
    series: &[Series],
    markers: &[Marker],
    frame: Frame,
    y_range: Y,
) -> Result<String, String>
where
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let Frame {
        x_max,
        y: (y_lo, y_hi),
        log_y,
        y_labels,
    } = frame;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let caption = if log_y {
            format!("{title} (log scale)")
        } else {
            title.to_owned()
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, y_range)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds since traffic started")
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_labels(y_labels)
            .y_label_formatter(&|y| {
                // On a log scale every 1..9 multiple is a grid line; label 1, 2 and 5 only.
                if log_y && !matches!(leading_digit(*y), Some(1 | 2 | 5)) {
                    String::new()
                } else {
                    axis_label(*y)
                }
            })
            .light_line_style(RGBColor(240, 240, 240))
            .draw()
            .map_err(|e| err(&e))?;
        for marker in markers {
            // A window: a translucent band, labelled below an event's label height.
            let (color, label_y) = match marker.until {
                Some(until) => {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(marker.x, y_lo), (until.max(marker.x), y_hi)],
                            WINDOW.mix(0.15).filled(),
                        )))
                        .map_err(|e| err(&e))?;
                    (WINDOW, 18)
                }
                None => {
                    chart
                        .draw_series(DashedLineSeries::new(
                            [(marker.x, y_lo), (marker.x, y_hi)],
                            6,
                            4,
                            ShapeStyle::from(&MARKER).stroke_width(2),
                        ))
                        .map_err(|e| err(&e))?;
                    (MARKER, 4)
                }
            };
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((marker.x, y_hi))
                        + Text::new(
                            marker.label.clone(),
                            (4, label_y),
                            ("sans-serif", 12).into_font().color(&color),
                        ),
                ))
                .map_err(|e| err(&e))?;
        }
        for line in series {
            let color = line.color;
            let style = ShapeStyle::from(&color).stroke_width(2);
            let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for &(x, y) in &line.points {
                if y.is_finite() && (!log_y || y > 0.0) {
                    segments.last_mut().expect("one segment").push((x, y));
                } else if !segments.last().expect("one segment").is_empty() {
                    segments.push(Vec::new());
                }
            }
            for (i, segment) in segments.into_iter().enumerate() {
                // A lone point would draw nothing as a line: mark it with a short tick.
                let segment = if segment.len() == 1 {
                    let (x, y) = segment[0];
                    vec![(x - 0.2, y), (x + 0.2, y)]
                } else {
                    segment
                };
                let drawn = chart
                    .draw_series(LineSeries::new(segment, style))
                    .map_err(|e| err(&e))?;
                if i == 0 {
                    drawn.label(line.name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// A latency plot reads better on a log scale when its positive values span more than a
/// factor of 20.
pub(crate) fn latency_scale(values: impl Iterator<Item = f64>) -> Scale {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if hi > 0.0 && hi / lo > 20.0 {
        Scale::Log
    } else {
        Scale::Linear
    }
}

/// A timeline column as points; seconds without answers are gaps for latency columns.
pub(crate) fn timeline_points(
    timeline: &[Second],
    value: impl Fn(&Second) -> f64,
) -> Vec<(f64, f64)> {
    timeline
        .iter()
        .map(|row| (row.second as f64, value(row)))
        .collect()
}

/// A latency column in milliseconds (NaN where the second had no answers).
pub(crate) fn latency_ms(row: &Second, us: u64) -> f64 {
    if row.answered == 0 {
        f64::NAN
    } else {
        us as f64 / 1000.0
    }
}

fn percentile_cells(p: &Percentiles) -> String {
    [p.p50, p.p90, p.p99, p.p999, p.max]
        .iter()
        .map(|&us| format!("<td class=\"n\">{}</td>", ms(us)))
        .collect()
}

fn pass_fail(passed: bool) -> &'static str {
    if passed {
        "<span class=\"pass\">pass</span>"
    } else {
        "<span class=\"fail\">FAIL</span>"
    }
}

/// What the page does not plot, and why (the footer says so, so no one looks for it).
pub(crate) const NOT_PLOTTED: &str = "<p>Not plotted yet:</p>\n<ul>\n\
<li>Sessions ended by charging decisions over time: the timeline records only sessions lost \
to the infrastructure; the charged-out total is in the sessions table.</li>\n\
</ul>\n";

/// The whole page for one run.
pub fn render(report: &Report) -> String {
    let name = escape(&report.scenario);
    let passed = report.passed();
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>loadgen report: {name}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>loadgen report: {name} <span class=\"badge {}\">{}</span></h1>\n",
        if passed { "pass" } else { "fail" },
        if passed { "PASS" } else { "FAIL" },
    );
    let _ = write!(
        page,
        "<table>\n<tr><th>scenario</th><td>{name}</td></tr>\n\
         <tr><th>seed</th><td class=\"n\">{}</td></tr>\n\
         <tr><th>elapsed</th><td class=\"n\">{:.1} s</td></tr>\n\
         <tr><th>rate</th><td class=\"n\">{:.0} requests/s answered</td></tr>\n\
         <tr><th>failed requests</th><td class=\"n\">{}</td></tr>\n\
         <tr><th>loadgen behind its schedule</th><td class=\"n\">p99 {} ms, max {} ms</td></tr>\n\
         <tr><th>report version</th><td class=\"n\">{}</td></tr>\n</table>\n",
        report.seed,
        report.elapsed_seconds,
        report.rate,
        report.failed_requests,
        ms(report.loadgen_behind_us.0),
        ms(report.loadgen_behind_us.1),
        report.report_version,
    );

    page += "<h2>Requests per step</h2>\n<table>\n<tr><th rowspan=\"2\">step</th>\
             <th rowspan=\"2\">sent</th><th rowspan=\"2\">answered</th>\
             <th rowspan=\"2\">timeouts</th><th rowspan=\"2\">results by Result-Code</th>\
             <th colspan=\"5\">scheduled latency, ms (from the intended send time)</th>\
             <th colspan=\"5\">service latency, ms (from the actual send)</th></tr>\n<tr>";
    for _ in 0..2 {
        page += "<th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th>";
    }
    page += "</tr>\n";
    for step in &report.steps {
        let results: Vec<String> = step
            .results
            .iter()
            .map(|(&code, n)| match ResultCode(code).name() {
                Some(known) => format!("{code} {}: {n}", escape(known)),
                None => format!("{code}: {n}"),
            })
            .collect();
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"nw\">{}</td>{}{}</tr>",
            escape(&step.step),
            step.sent,
            step.answered,
            step.timeouts,
            results.join("<br>"),
            percentile_cells(&step.scheduled_us),
            percentile_cells(&step.service_us),
        );
    }
    page += "</table>\n";

    let sessions = &report.sessions;
    let _ = write!(
        page,
        "<h2>Sessions by outcome</h2>\n<table>\n\
         <tr><th>completed</th><td class=\"n\">{}</td></tr>\n\
         <tr><th>ended by charging (4012, administrative ASR)</th><td class=\"n\">{}</td></tr>\n\
         <tr><th>refused at START</th><td class=\"n\">{}</td></tr>\n\
         <tr><th>lost to the infrastructure</th><td class=\"n\">{}</td></tr>\n",
        sessions.completed,
        sessions.charged_out,
        sessions.refused,
        sessions.dropped(),
    );
    for (why, n) in &sessions.lost {
        let _ = writeln!(
            page,
            "<tr><td>&nbsp;&nbsp;lost: {}</td><td class=\"n\">{n}</td></tr>",
            escape(why)
        );
    }
    page += "</table>\n";

    let books = &report.books;
    page += "<h2>Charging books</h2>\n";
    match &books.error {
        Some(error) => {
            let _ = writeln!(page, "<p class=\"fail\">NOT CHECKED: {}</p>", escape(error));
        }
        None => {
            let _ = write!(
                page,
                "<table>\n<tr><th>accounts compared exactly</th><td class=\"n\">{}</td></tr>\n\
                 <tr><th>mismatched (debit differs from usage &times; tariff)</th>\
                 <td class=\"n {}\">{}</td></tr>\n\
                 <tr><th>left out (a request's outcome unknown)</th><td class=\"n\">{}</td></tr>\n\
                 <tr><th>pdf's own books check</th><td>{}</td></tr>\n</table>\n",
                books.accounts_compared,
                if books.mismatches == 0 {
                    "pass"
                } else {
                    "fail"
                },
                books.mismatches,
                books.accounts_uncertain,
                if books.pdf_books_ok {
                    "<span class=\"pass\">ok</span>"
                } else {
                    "<span class=\"fail\">FAILED</span>"
                },
            );
        }
    }
    if !books.examples.is_empty() {
        page += "<ul>\n";
        for example in &books.examples {
            let _ = writeln!(page, "<li><code>{}</code></li>", escape(example));
        }
        page += "</ul>\n";
    }

    page += "<h2>Thresholds</h2>\n";
    if report.thresholds.is_empty() {
        page += "<p class=\"note\">The scenario sets no thresholds.</p>\n";
    } else {
        page += "<table>\n<tr><th>threshold</th><th>limit</th><th>measured</th><th></th></tr>\n";
        for verdict in &report.thresholds {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(&verdict.threshold),
                escape(&verdict.limit),
                escape(&verdict.measured),
                pass_fail(verdict.passed),
            );
        }
        page += "</table>\n";
    }
    if !report.slo_windows.is_empty() {
        page += "<p>Windows (thresholds named <code>window.key</code> judge only the timeline \
                 seconds that overlap them):</p>\n<ul>\n";
        for span in &report.slo_windows {
            let _ = writeln!(
                page,
                "<li><code>{}</code>: {:.1} s to {:.1} s after traffic started ({}), {} seconds judged</li>",
                escape(&span.name),
                span.from_s,
                span.to_s,
                escape(&span.anchor),
                span.seconds.len()
            );
        }
        page += "</ul>\n";
    }
    let _ = writeln!(
        page,
        "<p>Result: {}</p>",
        if passed {
            "<span class=\"pass\">pass</span>"
        } else {
            "<span class=\"fail\">FAIL (thresholds breached)</span>"
        }
    );

    let markers: Vec<Marker> = report
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| Marker {
            x: e.fired_s,
            label: format!("E{} {}", i + 1, e.action),
            until: None,
        })
        .collect();
    if !report.events.is_empty() {
        page += "<h2>Events</h2>\n<table>\n<tr><th></th><th>at (s)</th><th>fired (s)</th>\
                 <th>event</th><th>outcome</th><th>detail</th></tr>\n";
        for (marker, event) in markers.iter().zip(&report.events) {
            let _ = writeln!(
                page,
                "<tr><th>{}</th><td class=\"n\">{:.1}</td><td class=\"n\">{:.2}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                escape(marker.label.split(' ').next().unwrap_or_default()),
                event.at_s,
                event.fired_s,
                escape(&event.description),
                if event.ok() {
                    "<span class=\"pass\">ok</span>".to_owned()
                } else {
                    format!("<span class=\"fail\">{}</span>", escape(&event.outcome))
                },
                escape(&event.detail),
            );
        }
        page += "</table>\n<p class=\"note\">Each event is a dashed vertical line on the plots \
                 below, at the second it fired.</p>\n";
    }

    // Threshold windows as shaded bands behind the lines.
    let mut markers = markers;
    markers.extend(report.slo_windows.iter().map(|w| Marker {
        x: w.from_s,
        label: w.name.clone(),
        until: Some(w.to_s),
    }));
    page += "<h2>Timeline</h2>\n";
    if !report.slo_windows.is_empty() {
        page += "<p class=\"note\">Threshold windows are the shaded bands on the plots.</p>\n";
    }
    page += &timeline_plots(&report.timeline, &markers);
    page += &node_plot(&report.pdf_sessions, &markers);
    page += &gateway_plot(report, &markers);

    let _ = write!(
        page,
        "<footer>\n<p>Written by loadgen {} from the same figures as summary.json and \
         timeline.csv.</p>\n{NOT_PLOTTED}</footer>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
    );
    page
}

/// Live sessions per PDF node, one line per node (nothing without samples).
fn node_plot(samples: &[crate::nodes::NodeSample], markers: &[Marker]) -> String {
    let names = crate::nodes::node_names(samples);
    if names.is_empty() {
        return String::new();
    }
    let series: Vec<Series> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Series {
            name: name.clone(),
            color: PALETTE[i % PALETTE.len()],
            points: samples
                .iter()
                .filter_map(|s| s.sessions.get(name).map(|&n| (s.second as f64, n as f64)))
                .collect(),
        })
        .collect();
    line_chart_marked(
        "Live sessions per PDF node (the gateway's count)",
        "sessions",
        &series,
        Scale::Count,
        markers,
    )
}

/// The loadgen's p99 per second beside the gateway's own on each leg (its bucket bounds; a
/// second over the last bound is left out): where a bad second's time went. Nothing
/// without the gateway's latency.
fn gateway_plot(report: &Report, markers: &[Marker]) -> String {
    let Some(latency) = &report.gateway_latency else {
        return String::new();
    };
    let leg = |leg| -> Vec<(f64, f64)> {
        latency
            .p99s(leg)
            .filter(|&(_, us)| us != u64::MAX)
            .map(|(second, us)| (second as f64, us as f64 / 1000.0))
            .collect()
    };
    let series = [
        Series {
            name: "loadgen p99".into(),
            color: PALETTE[3],
            points: timeline_points(&report.timeline, |r| latency_ms(r, r.p99_us)),
        },
        Series {
            name: "gateway access leg p99".into(),
            color: PALETTE[0],
            points: leg(Leg::Access),
        },
        Series {
            name: "gateway charging leg p99".into(),
            color: PALETTE[2],
            points: leg(Leg::Charging),
        },
    ];
    let scale = latency_scale(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    line_chart_marked(
        "Latency per second: the loadgen p99 beside the gateway legs (bucket bounds)",
        "ms",
        &series,
        scale,
        markers,
    )
}

fn timeline_plots(timeline: &[Second], markers: &[Marker]) -> String {
    let mut plots = String::new();
    plots += &line_chart_marked(
        "Throughput per second",
        "requests/s",
        &[
            Series {
                name: "answered".into(),
                color: PALETTE[0],
                points: timeline_points(timeline, |r| r.answered as f64),
            },
            Series {
                name: "failed".into(),
                color: PALETTE[1],
                points: timeline_points(timeline, |r| r.failed as f64),
            },
        ],
        Scale::Count,
        markers,
    );
    let latency = [
        ("p50", PALETTE[2], 0usize),
        ("p99", PALETTE[3], 1),
        ("max", PALETTE[1], 2),
    ];
    let column = |r: &Second, which: usize| match which {
        0 => latency_ms(r, r.p50_us),
        1 => latency_ms(r, r.p99_us),
        _ => latency_ms(r, r.max_us),
    };
    let series: Vec<Series> = latency
        .iter()
        .map(|&(name, color, which)| Series {
            name: name.into(),
            color,
            points: timeline_points(timeline, |r| column(r, which)),
        })
        .collect();
    let scale = latency_scale(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    plots += &line_chart_marked(
        "Latency per second (scheduled, from the intended send time)",
        "ms",
        &series,
        scale,
        markers,
    );
    plots += &line_chart_marked(
        "Live sessions",
        "sessions",
        &[Series {
            name: "live sessions (end of second)".into(),
            color: PALETTE[0],
            points: timeline_points(timeline, |r| r.live_sessions as f64),
        }],
        Scale::Count,
        markers,
    );
    plots += &line_chart_marked(
        "Sessions lost to the infrastructure (cut), cumulative",
        "sessions",
        &[Series {
            name: "lost so far".into(),
            color: PALETTE[1],
            points: timeline_points(timeline, |r| r.lost_sessions as f64),
        }],
        Scale::Count,
        markers,
    );
    plots
}

/// A small synthetic report for the unit tests of this module and [`crate::compare`]
/// (built through serde, so fields that later versions add with defaults need no change).
#[cfg(test)]
pub(crate) fn sample_report(name: &str, p99_us: u64, lost: u64) -> Report {
    use serde_json::json;

    let percentiles = json!({
        "p50": 200, "p90": 400, "p99": p99_us, "p999": 2 * p99_us, "max": 3 * p99_us
    });
    let step = |step: &str, sent: u64| {
        json!({
            "step": step, "sent": sent, "answered": sent - 1, "timeouts": 1,
            "results": { "2001": sent - 2, "4012": 1 },
            "scheduled_us": percentiles, "service_us": percentiles,
        })
    };
    let lost_by = if lost > 0 {
        json!({ "link_broken": lost })
    } else {
        json!({})
    };
    let timeline: Vec<serde_json::Value> = (1..=6u64)
        .map(|second| {
            json!({
                "second": second,
                "answered": if second == 4 { 0 } else { 1000 + 50 * second },
                "failed": u64::from(second == 5),
                "live_sessions": 50 * second.min(3),
                "lost_sessions": if second >= 5 { lost } else { 0 },
                "p50_us": 200 + second,
                "p99_us": p99_us + 10 * second,
                "max_us": 40 * p99_us,
            })
        })
        .collect();
    let report = json!({
        "report_version": crate::report::REPORT_VERSION,
        "scenario": name,
        "seed": 7,
        "elapsed_seconds": 6.2,
        "rate": 1234.5,
        "steps": [step("START", 300), step("INTERIM", 900), step("STOP", 280)],
        "sessions": { "completed": 250, "charged_out": 20, "refused": 3, "lost": lost_by },
        "failed_requests": 3,
        "loadgen_behind_us": [150, 900],
        "books": {
            "checked": true, "accounts_compared": 1800, "accounts_uncertain": 2,
            "mismatches": 0, "examples": [], "pdf_books_ok": true, "error": null
        },
        "thresholds": [
            { "threshold": "dropped_sessions", "limit": "0", "measured": lost.to_string(),
              "passed": lost == 0 },
            { "threshold": "p99_latency", "limit": "250.00ms",
              "measured": format!("{}ms", ms(p99_us)), "passed": p99_us <= 250_000 },
        ],
        "timeline": timeline,
    });
    serde_json::from_value(report).expect("a sample report")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_the_tables_and_the_plots_and_escapes_names() {
        let report = sample_report("<script>alert('x')</script> & co", 1500, 2);
        let page = render(&report);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("<script>"), "the name must be escaped");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
        // No external assets.
        for external in ["src=\"http", "href=\"http", "<link", "<script"] {
            assert!(!page.contains(external), "{external}");
        }
        // The four plots, inline SVG.
        assert_eq!(page.matches("<svg").count(), 4, "{page}");
        for title in [
            "Throughput per second",
            "Latency per second",
            "Live sessions",
            "Sessions lost to the infrastructure",
        ] {
            assert!(page.contains(title), "{title}");
        }
        // Latency from 0.2 ms to 60 ms spans more than 20x: a log scale.
        assert!(page.contains("(log scale)"));
        // The tables.
        for text in [
            "<th>START</th>",
            "<th>INTERIM</th>",
            "2001 SUCCESS: 298",
            "4012 CREDIT_LIMIT_REACHED: 1",
            "<th>p99.9</th>",
            "lost: link_broken",
            "accounts compared exactly",
            "<td>dropped_sessions</td>",
            "<span class=\"fail\">FAIL</span>",
            "<td>p99_latency</td>",
            "1.50",
            "Not plotted yet",
        ] {
            assert!(page.contains(text), "{text} missing");
        }
        assert!(page.contains("badge fail"));
    }

    #[test]
    fn the_gateway_s_own_latency_is_plotted_beside_the_loadgen_s() {
        let mut report = sample_report("gateway", 1500, 0);
        let title = "the loadgen p99 beside the gateway legs";
        assert!(!render(&report).contains(title), "no samples, no plot");
        report.gateway_latency = Some(crate::gateway_latency::GatewayLatency {
            bounds_us: vec![500, 1000, 2500],
            seconds: (1..=6u64)
                .map(|second| crate::gateway_latency::GatewaySecond {
                    second,
                    access: vec![90, 9, second, 0],
                    charging: vec![95, 5, 0, 0],
                })
                .collect(),
        });
        let page = render(&report);
        assert!(page.contains(title));
        assert!(
            page.contains("gateway access leg p99") && page.contains("gateway charging leg p99")
        );
        let csv = report.timeline_csv();
        assert!(
            csv.lines()
                .next()
                .is_some_and(|h| h.ends_with(",gateway_access_p99_us,gateway_charging_p99_us")),
            "{csv}"
        );
    }

    #[test]
    fn live_sessions_per_pdf_node_are_one_line_per_node() {
        let mut report = sample_report("nodes", 1500, 0);
        assert!(
            !render(&report).contains("per PDF node"),
            "no samples, no plot"
        );
        report.pdf_sessions = (1..=6u64)
            .map(|second| crate::nodes::NodeSample {
                second,
                sessions: [("pdf0", 100 - 10 * second), ("pdf1", 10 * second)]
                    .into_iter()
                    .filter(|&(name, _)| name == "pdf0" || second > 2)
                    .map(|(name, n)| (name.to_owned(), n))
                    .collect(),
            })
            .collect();
        let page = render(&report);
        assert!(page.contains("Live sessions per PDF node"));
        assert!(
            page.contains(
                "
pdf0
"
            ) && page.contains(
                "
pdf1
"
            ),
            "a legend entry per node"
        );
        let csv = report.timeline_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(
            lines[0].ends_with(",max_us,sessions_pdf0,sessions_pdf1"),
            "{csv}"
        );
        assert!(
            lines[1].ends_with(",90,"),
            "pdf1 not listed in second 1: {csv}"
        );
        assert!(lines[3].ends_with(",70,30"), "{csv}");
    }

    #[test]
    fn events_are_listed_and_marked_on_every_plot() {
        let mut report = sample_report("events", 1500, 0);
        assert!(
            !render(&report).contains("<h2>Events</h2>"),
            "no events, no section"
        );
        let event = |fired_s: f64, action: &str, description: &str, outcome: &str| {
            crate::events::EventRecord {
                at_s: fired_s.floor(),
                fired_s,
                action: action.into(),
                description: description.into(),
                outcome: outcome.into(),
                detail: "HTTP 200 {\"weight\":0}".into(),
                exit_status: None,
                took_s: 0.01,
            }
        };
        report.events = vec![
            event(2.004, "set_weight", "set_weight pdf0 = 0", "ok"),
            event(4.5, "command", "command sh -c 'exit 3' <&>", "failed"),
        ];
        let page = render(&report);
        for text in [
            "<h2>Events</h2>",
            "<th>E1</th>",
            "set_weight pdf0 = 0",
            "2.00",
            "command sh -c &#39;exit 3&#39; &lt;&amp;&gt;",
            "<span class=\"fail\">failed</span>",
            "HTTP 200 {&quot;weight&quot;:0}",
            "dashed vertical line",
        ] {
            assert!(page.contains(text), "{text} missing");
        }
        // A labelled marker on each of the four plots.
        assert_eq!(page.matches("E1 set_weight").count(), 4, "{page}");
        assert_eq!(page.matches("E2 command").count(), 4);
        // An event after the last timeline row widens the x axis rather than vanishing.
        report.events[1].fired_s = 9.5;
        assert_eq!(render(&report).matches("E2 command").count(), 4);
    }

    #[test]
    fn threshold_windows_are_shaded_bands_on_every_plot() {
        let mut report = sample_report("windows", 1500, 0);
        let before = render(&report);
        assert!(!before.contains("shaded bands"));
        report.slo_windows = vec![crate::windows::WindowSpan {
            name: "after-upgrade".into(),
            from_s: 2.0,
            to_s: 4.5,
            anchor: "event[0] + 0 s".into(),
            seconds: vec![3, 4, 5],
        }];
        let page = render(&report);
        assert!(page.contains("shaded bands"));
        // Labelled on each of the four plots, and one more filled rectangle on each.
        assert_eq!(page.matches("after-upgrade").count(), 4 + 1, "{page}");
        assert_eq!(
            page.matches("<rect").count(),
            before.matches("<rect").count() + 4,
            "a band per plot"
        );
    }

    #[test]
    fn a_passing_run_without_timeline_still_renders() {
        let mut report = sample_report("quiet", 1000, 0);
        report.timeline.clear();
        report.books.error = Some("admin <port> closed".into());
        let page = render(&report);
        assert!(page.contains("badge pass"));
        assert!(page.contains("NOT CHECKED: admin &lt;port&gt; closed"));
        assert!(!page.contains("<svg"));
        assert!(page.contains("no data"));
    }

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(axis_label(0.0), "0");
        assert_eq!(axis_label(2500.0), "2500");
        assert_eq!(axis_label(25_000.0), "25k");
        assert_eq!(axis_label(2_500_000.0), "2.5M");
        assert_eq!(axis_label(1.5), "1.5");
        assert_eq!(axis_label(0.25), "0.25");
        assert_eq!(leading_digit(0.2), Some(2));
        assert_eq!(leading_digit(5000.0), Some(5));
        assert_eq!(leading_digit(30.0), Some(3));
        assert_eq!(leading_digit(1.5), None);
    }
}
