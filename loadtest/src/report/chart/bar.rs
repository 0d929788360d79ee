//! A run report's bar chart: p50, p95 and p99 per endpoint as grouped horizontal bars (an
//! endpoint that never answered drawn as such, not as 0 ms).

use std::fmt::Write;

use crate::report::format::{esc, ms};
use crate::report::{EndpointStats, Report};

use super::scale::Scale;
use super::{coord, legend, svg_open, svg_title, WIDTH};

const BAR_COLORS: [&str; 3] = ["#9ecae1", "#4292c6", "#08306b"];

/// p50, p95 and p99 per endpoint as grouped horizontal bars, in ms.
pub(crate) fn latency_bars(r: &Report) -> String {
    let title = "Latency per endpoint (ms)";
    let at = BarLayout::of(r);
    let mut s = String::new();
    svg_open(&mut s, at.height, title);
    svg_title(&mut s, title);
    legend(
        &mut s,
        at.left,
        38.0,
        PERCENTILES
            .into_iter()
            .zip(BAR_COLORS)
            .map(|(name, color)| (name, color, true)),
    );
    let scale = Scale::zero_to(largest_ms(r), false);
    bar_axes(&mut s, at, scale);
    if r.requests.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"fill:#718096\">no requests</text>",
            coord(at.left + at.plot_w / 2.0),
            coord(at.top + at.plot_h / 2.0)
        );
    }
    for (i, (endpoint, stats)) in r.requests.iter().enumerate() {
        endpoint_bars(&mut s, at, scale, i, endpoint, stats);
    }
    s.push_str("</svg>");
    s
}

const PERCENTILES: [&str; 3] = ["p50", "p95", "p99"];

/// One bar's height; a group holds three bars and a gap.
const BAR: f64 = 13.0;
const GROUP: f64 = 3.0 * (BAR + 2.0) + 14.0;

/// Where the latency bars sit: room on the left for the longest endpoint name, one group
/// of bars per endpoint.
#[derive(Clone, Copy)]
struct BarLayout {
    left: f64,
    top: f64,
    bottom: f64,
    plot_w: f64,
    plot_h: f64,
    height: f64,
}

impl BarLayout {
    fn of(r: &Report) -> BarLayout {
        let longest = r
            .requests
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0);
        let left = (longest as f64 * 7.0 + 20.0).clamp(120.0, 340.0);
        let right = 90.0;
        let top = 56.0;
        let plot_h = GROUP * r.requests.len().max(1) as f64;
        let bottom = top + plot_h;
        BarLayout {
            left,
            top,
            bottom,
            plot_w: WIDTH - left - right,
            plot_h,
            height: bottom + 44.0,
        }
    }
}

/// The largest of every endpoint's p50, p95 and p99, in ms.
fn largest_ms(r: &Report) -> f64 {
    r.requests
        .values()
        .map(|e| e.latency_us.p99.max(e.latency_us.p95).max(e.latency_us.p50))
        .max()
        .unwrap_or(0) as f64
        / 1000.0
}

/// The grid and labels of the millisecond axis, the axes and their caption.
fn bar_axes(s: &mut String, at: BarLayout, scale: Scale) {
    for tick in scale.ticks() {
        let x = at.left + scale.frac(tick) * at.plot_w;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            coord(at.top),
            coord(at.bottom),
            coord(at.bottom + 17.0),
            scale.label(tick),
            x = coord(x)
        );
    }
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">milliseconds</text>",
        coord(at.left + at.plot_w / 2.0),
        coord(at.height - 8.0),
        l = coord(at.left),
        r = coord(at.left + at.plot_w),
        t = coord(at.top),
        b = coord(at.bottom)
    );
}

/// The `i`th endpoint's name and its three bars, or "never answered".
fn endpoint_bars(
    s: &mut String,
    at: BarLayout,
    scale: Scale,
    i: usize,
    endpoint: &str,
    stats: &EndpointStats,
) {
    let y0 = at.top + i as f64 * GROUP + 7.0;
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
        coord(at.left - 8.0),
        coord(y0 + 1.5 * (BAR + 2.0) + 4.0),
        esc(endpoint)
    );
    if stats.count == 0 {
        // No answer, no latency: not a bar of 0 ms.
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" style=\"fill:#718096\">never answered</text>",
            coord(at.left + 4.0),
            coord(y0 + 1.5 * (BAR + 2.0) + 4.0)
        );
        return;
    }
    let l = &stats.latency_us;
    for (j, (us, color)) in [l.p50, l.p95, l.p99]
        .into_iter()
        .zip(BAR_COLORS)
        .enumerate()
    {
        let y = y0 + j as f64 * (BAR + 2.0);
        let w = scale.frac(us as f64 / 1000.0) * at.plot_w;
        let name = PERCENTILES[j];
        let _ = write!(
            s,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\"><title>{} {name}: {} ms</title></rect><text x=\"{}\" y=\"{}\">{}</text>",
            coord(at.left),
            coord(y),
            coord(w),
            coord(BAR),
            esc(endpoint),
            ms(us),
            coord(at.left + w + 4.0),
            coord(y + BAR - 2.0),
            ms(us)
        );
    }
}
