//! Charts as hand-written inline SVG, for every HTML page lockbench writes (a run's report,
//! a sweep, a breakpoint search): scales with round ticks, line charts, bar charts and their
//! legends. Coordinates go through [`coord`], so an empty time line or all-zero values draw
//! an empty frame, never NaN; every piece of text goes through the one escaping function.
//! Draws what it is given (`latency_bars`: a report's requests, an endpoint that never
//! answered drawn as such, not as 0 ms); measures and decides nothing.

use std::fmt::Write;

use super::format::{esc, fixed, ms};
use super::Report;

pub(crate) const BLUE: &str = "#2b6cb0";
pub(crate) const RED: &str = "#c53030";
pub(crate) const PURPLE: &str = "#6b46c1";
pub(crate) const GREEN: &str = "#2f855a";
pub(crate) const BAR_COLORS: [&str; 3] = ["#9ecae1", "#4292c6", "#08306b"];

pub(crate) const WIDTH: f64 = 900.0;

/// A coordinate for SVG: one decimal, and 0 for anything not finite.
pub(crate) fn coord(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "0".to_owned()
    }
}

/// Ticks from 0 to a round top at or above `max`: 1, 2 or 5 times a power of ten apart,
/// about five of them; whole steps for counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scale {
    pub(crate) step: f64,
    pub(crate) top: f64,
}

impl Scale {
    pub(crate) fn zero_to(max: f64, integer: bool) -> Scale {
        Scale::zero_to_in(max, integer, 5.0)
    }

    /// As [`Scale::zero_to`], with about `intervals` steps.
    pub(crate) fn zero_to_in(max: f64, integer: bool, intervals: f64) -> Scale {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            0.0
        };
        let raw = max / intervals;
        let mut step = if raw > 0.0 {
            let magnitude = 10f64.powf(raw.log10().floor());
            let mantissa = raw / magnitude;
            let nice = if mantissa <= 1.0 {
                1.0
            } else if mantissa <= 2.0 {
                2.0
            } else if mantissa <= 5.0 {
                5.0
            } else {
                10.0
            };
            nice * magnitude
        } else {
            1.0
        };
        if integer && step < 1.0 {
            step = 1.0;
        }
        let top = ((max / step).ceil() * step).max(step);
        Scale { step, top }
    }

    pub(crate) fn ticks(self) -> Vec<f64> {
        let n = (self.top / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }

    /// `value` as a fraction of the axis, 0 to 1.
    pub(crate) fn frac(self, value: f64) -> f64 {
        if self.top > 0.0 && value.is_finite() {
            (value / self.top).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    pub(crate) fn label(self, value: f64) -> String {
        let decimals = if self.step >= 1.0 {
            0
        } else {
            (-self.step.log10()).ceil().clamp(0.0, 3.0) as usize
        };
        fixed(value, decimals)
    }
}

pub(crate) struct Series<'a> {
    pub(crate) name: &'a str,
    pub(crate) color: &'a str,
    pub(crate) values: Vec<f64>,
}

pub(crate) struct Axis<'a> {
    pub(crate) label: &'a str,
    pub(crate) integer: bool,
    pub(crate) series: Vec<Series<'a>>,
}

impl Axis<'_> {
    pub(crate) fn scale(&self) -> Scale {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        Scale::zero_to(max, self.integer)
    }

    /// The colour of the axis's labels: its series' when it has only one.
    pub(crate) fn color(&self) -> &str {
        match self.series.as_slice() {
            [only] => only.color,
            _ => "#2d3748",
        }
    }
}

/// A line chart over the time line, with a left axis and an optional right one.
pub(crate) struct LineChart<'a> {
    pub(crate) title: &'a str,
    pub(crate) xs: &'a [f64],
    pub(crate) left: Axis<'a>,
    pub(crate) right: Option<Axis<'a>>,
    /// Shaded spans (faults) and marks (restarts): (from s, to s, label).
    pub(crate) bands: &'a [(f64, f64, String)],
}

/// Where a line chart's plot sits in its frame.
#[derive(Clone, Copy)]
struct Plot {
    height: f64,
    left: f64,
    top: f64,
    bottom: f64,
    width: f64,
}

impl Plot {
    fn plot_h(&self) -> f64 {
        self.bottom - self.top
    }

    fn right_edge(&self) -> f64 {
        self.left + self.width
    }
}

/// The x positions of the time line: its first second, its span, and the plot they map to.
#[derive(Clone, Copy)]
struct XMap {
    min: f64,
    span: f64,
    plot: Plot,
}

impl XMap {
    fn at(&self, x: f64) -> f64 {
        self.plot.left + ((x - self.min) / self.span).clamp(0.0, 1.0) * self.plot.width
    }
}

impl LineChart<'_> {
    pub(crate) fn svg(&self) -> String {
        let height = 320.0;
        let (left, right) = (70.0, if self.right.is_some() { 70.0 } else { 24.0 });
        let plot = Plot {
            height,
            left,
            top: 56.0,
            bottom: height - 46.0,
            width: WIDTH - left - right,
        };
        let mut s = String::new();
        svg_open(&mut s, height, self.title);
        svg_title(&mut s, self.title);
        let all_series: Vec<&Series> = self
            .left
            .series
            .iter()
            .chain(self.right.iter().flat_map(|a| a.series.iter()))
            .collect();
        legend(
            &mut s,
            left,
            38.0,
            all_series.iter().map(|x| (x.name, x.color, false)),
        );
        self.frame(&mut s, plot);
        let (left_scale, right_scale) = self.y_axes(&mut s, plot);
        if self.xs.is_empty() {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"fill:#718096\">no time line: the run recorded no points</text></svg>",
                coord(plot.left + plot.width / 2.0),
                coord(plot.top + plot.plot_h() / 2.0)
            );
            return s;
        }
        let x_min = self.xs.iter().copied().fold(f64::INFINITY, f64::min);
        let x_max = self.xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let xmap = XMap {
            min: x_min,
            span: (x_max - x_min).max(1.0),
            plot,
        };
        self.bands_and_x_ticks(&mut s, xmap);
        let mut axes = vec![(&self.left, left_scale)];
        if let (Some(axis), Some(scale)) = (&self.right, right_scale) {
            axes.push((axis, scale));
        }
        for (axis, scale) in axes {
            for series in &axis.series {
                self.line(&mut s, xmap, series, scale);
            }
        }
        s.push_str("</svg>");
        s
    }

    /// The frame, the x axis and its caption.
    fn frame(&self, s: &mut String, p: Plot) {
        let _ = write!(
            s,
            "<line class=\"axis\" x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\"/>",
            l = coord(p.left),
            r = coord(p.right_edge()),
            t = coord(p.top),
            b = coord(p.bottom)
        );
        if self.right.is_some() {
            let _ = write!(
                s,
                "<line class=\"axis\" x1=\"{r}\" y1=\"{t}\" x2=\"{r}\" y2=\"{b}\"/>",
                r = coord(p.right_edge()),
                t = coord(p.top),
                b = coord(p.bottom)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since the load started</text>",
            coord(p.left + p.width / 2.0),
            coord(p.height - 8.0)
        );
    }

    /// The y axes (grid lines from the left one) and their labels; their scales.
    fn y_axes(&self, s: &mut String, p: Plot) -> (Scale, Option<Scale>) {
        let plot_h = p.plot_h();
        let left_scale = self.left.scale();
        for tick in left_scale.ticks() {
            let y = p.bottom - left_scale.frac(tick) * plot_h;
            let _ = write!(
                s,
                "<line class=\"grid\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\" style=\"fill:{}\">{}</text>",
                coord(p.left),
                coord(p.right_edge()),
                coord(p.left - 6.0),
                coord(y + 4.0),
                self.left.color(),
                left_scale.label(tick),
                y = coord(y)
            );
        }
        axis_label(s, 16.0, p.top + plot_h / 2.0, -90.0, &self.left);
        let right_scale = self.right.as_ref().map(Axis::scale);
        if let (Some(axis), Some(scale)) = (&self.right, right_scale) {
            for tick in scale.ticks() {
                let y = p.bottom - scale.frac(tick) * plot_h;
                let _ = write!(
                    s,
                    "<line class=\"axis\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" style=\"fill:{}\">{}</text>",
                    coord(p.right_edge()),
                    coord(p.right_edge() + 4.0),
                    coord(p.right_edge() + 7.0),
                    coord(y + 4.0),
                    axis.color(),
                    scale.label(tick),
                    y = coord(y)
                );
            }
            axis_label(s, WIDTH - 14.0, p.top + plot_h / 2.0, 90.0, axis);
        }
        (left_scale, right_scale)
    }

    /// Shaded fault bands and the x ticks (whole seconds).
    fn bands_and_x_ticks(&self, s: &mut String, x: XMap) {
        let p = x.plot;
        for (from, to, label) in self.bands {
            let (x0, x1) = (x.at(*from), x.at(*to));
            let _ = write!(
                s,
                "<rect class=\"fault\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect><text class=\"fault\" x=\"{}\" y=\"{}\">{}</text>",
                coord(x0),
                coord(p.top),
                coord((x1 - x0).max(2.0)),
                coord(p.plot_h()),
                esc(label),
                coord(x0 + 3.0),
                coord(p.top + 12.0),
                esc(label)
            );
        }
        let x_scale = Scale::zero_to_in(x.span, true, 10.0);
        let steps = (x.span / x_scale.step).floor() as usize;
        for i in 0..=steps {
            let t = x.min + i as f64 * x_scale.step;
            let at = x.at(t);
            let _ = write!(
                s,
                "<line class=\"axis\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                coord(p.bottom),
                coord(p.bottom + 4.0),
                coord(p.bottom + 17.0),
                fixed(t, 0),
                x = coord(at)
            );
        }
    }

    /// One series as a line, with a dot per point when there are few enough.
    fn line(&self, s: &mut String, x: XMap, series: &Series, scale: Scale) {
        let p = x.plot;
        let points: Vec<(f64, f64)> = self
            .xs
            .iter()
            .zip(&series.values)
            .map(|(&t, &v)| (x.at(t), p.bottom - scale.frac(v) * p.plot_h()))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{},{}", coord(x), coord(y)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
            series.color,
            path.join(" "),
            esc(series.name)
        );
        if self.xs.len() <= 60 {
            for (&(x, y), &v) in points.iter().zip(&series.values) {
                let _ = write!(
                    s,
                    "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"><title>{}: {}</title></circle>",
                    coord(x),
                    coord(y),
                    series.color,
                    esc(series.name),
                    scale.label(v)
                );
            }
        }
    }
}

/// p50, p95 and p99 per endpoint as grouped horizontal bars, in ms.
pub(crate) fn latency_bars(r: &Report) -> String {
    let title = "Latency per endpoint (ms)";
    let bar = 13.0;
    let group = 3.0 * (bar + 2.0) + 14.0;
    let longest = r
        .requests
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0);
    let left = (longest as f64 * 7.0 + 20.0).clamp(120.0, 340.0);
    let right = 90.0;
    let top = 56.0;
    let plot_w = WIDTH - left - right;
    let plot_h = group * r.requests.len().max(1) as f64;
    let bottom = top + plot_h;
    let height = bottom + 44.0;

    let mut s = String::new();
    svg_open(&mut s, height, title);
    svg_title(&mut s, title);
    legend(
        &mut s,
        left,
        38.0,
        ["p50", "p95", "p99"]
            .into_iter()
            .zip(BAR_COLORS)
            .map(|(name, color)| (name, color, true)),
    );
    let max = r
        .requests
        .values()
        .map(|e| e.latency_us.p99.max(e.latency_us.p95).max(e.latency_us.p50))
        .max()
        .unwrap_or(0) as f64
        / 1000.0;
    let scale = Scale::zero_to(max, false);
    for tick in scale.ticks() {
        let x = left + scale.frac(tick) * plot_w;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            coord(top),
            coord(bottom),
            coord(bottom + 17.0),
            scale.label(tick),
            x = coord(x)
        );
    }
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">milliseconds</text>",
        coord(left + plot_w / 2.0),
        coord(height - 8.0),
        l = coord(left),
        r = coord(left + plot_w),
        t = coord(top),
        b = coord(bottom)
    );
    if r.requests.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"fill:#718096\">no requests</text>",
            coord(left + plot_w / 2.0),
            coord(top + plot_h / 2.0)
        );
    }
    for (i, (endpoint, stats)) in r.requests.iter().enumerate() {
        let y0 = top + i as f64 * group + 7.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            coord(left - 8.0),
            coord(y0 + 1.5 * (bar + 2.0) + 4.0),
            esc(endpoint)
        );
        if stats.count == 0 {
            // No answer, no latency: not a bar of 0 ms.
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" style=\"fill:#718096\">never answered</text>",
                coord(left + 4.0),
                coord(y0 + 1.5 * (bar + 2.0) + 4.0)
            );
            continue;
        }
        let l = &stats.latency_us;
        for (j, (us, color)) in [l.p50, l.p95, l.p99]
            .into_iter()
            .zip(BAR_COLORS)
            .enumerate()
        {
            let y = y0 + j as f64 * (bar + 2.0);
            let w = scale.frac(us as f64 / 1000.0) * plot_w;
            let name = ["p50", "p95", "p99"][j];
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\"><title>{} {name}: {} ms</title></rect><text x=\"{}\" y=\"{}\">{}</text>",
                coord(left),
                coord(y),
                coord(w),
                coord(bar),
                esc(endpoint),
                ms(us),
                coord(left + w + 4.0),
                coord(y + bar - 2.0),
                ms(us)
            );
        }
    }
    s.push_str("</svg>");
    s
}

pub(crate) fn svg_open(s: &mut String, height: f64, title: &str) {
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">",
        coord(WIDTH),
        coord(height),
        esc(title)
    );
}

pub(crate) fn svg_title(s: &mut String, title: &str) {
    let _ = write!(
        s,
        "<text class=\"title\" x=\"{}\" y=\"20\" text-anchor=\"middle\">{}</text>",
        coord(WIDTH / 2.0),
        esc(title)
    );
}

/// Legend entries in a row from `x`: a line (or a square for bars) and the name.
pub(crate) fn legend<'a>(
    s: &mut String,
    x: f64,
    y: f64,
    entries: impl Iterator<Item = (&'a str, &'a str, bool)>,
) {
    let mut x = x;
    for (name, color, square) in entries {
        if square {
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/>",
                coord(x),
                coord(y - 10.0)
            );
        } else {
            let _ = write!(
                s,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"3\"/>",
                coord(x),
                coord(x + 18.0),
                y = coord(y - 4.0)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            coord(x + 24.0),
            coord(y),
            esc(name)
        );
        x += 24.0 + name.chars().count() as f64 * 6.8 + 22.0;
    }
}

pub(crate) fn axis_label(s: &mut String, x: f64, y: f64, rotate: f64, axis: &Axis) {
    let _ = write!(
        s,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" transform=\"rotate({} {x} {y})\" style=\"fill:{}\">{}</text>",
        coord(rotate),
        axis.color(),
        esc(axis.label),
        x = coord(x),
        y = coord(y)
    );
}

/// Horizontal bars, one per row: a self-contained SVG.
pub(crate) fn bars(title: &str, unit: &str, values: &[(String, f64)], colour: &str) -> String {
    let max = values.iter().map(|v| v.1).fold(0.0_f64, f64::max).max(1e-9);
    let row_h = 22.0;
    let height = 40.0 + row_h * values.len() as f64;
    let mut svg = String::new();
    svg_open(&mut svg, height, title);
    let _ = write!(
        svg,
        "<text x=\"10\" y=\"20\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    for (i, (label, v)) in values.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let w = if v.is_finite() { 480.0 * v / max } else { 0.0 };
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{:.0}\" font-size=\"12\">{}</text><rect x=\"330\" y=\"{:.0}\" width=\"{w:.1}\" height=\"16\" fill=\"{colour}\"/><text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\">{v:.3} {}</text>",
            y + 13.0,
            esc(&label.chars().take(48).collect::<String>()),
            y,
            335.0 + w,
            y + 13.0,
            esc(unit)
        ));
    }
    svg.push_str("</svg>");
    svg
}

const PALETTE: [&str; 6] = [
    "#c0392b", "#2c7fb8", "#27ae60", "#8e44ad", "#d35400", "#7f8c8d",
];

/// One point per row (x: the row, y: the figure), one coloured series per journal/tx mode.
pub(crate) fn series_chart(title: &str, unit: &str, values: &[f64], series: &[String]) -> String {
    let names: Vec<&String> = {
        let mut v: Vec<&String> = series.iter().collect();
        v.sort();
        v.dedup();
        v
    };
    let values: Vec<f64> = values
        .iter()
        .map(|v| if v.is_finite() { *v } else { 0.0 })
        .collect();
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let (left, top, width, height) = (110.0, 40.0, 740.0, 220.0);
    let step = if values.len() > 1 {
        width / (values.len() - 1) as f64
    } else {
        0.0
    };
    let x = |i: usize| left + step * i as f64;
    let y = |v: f64| top + height - height * v / max;
    let mut svg = String::new();
    svg_open(
        &mut svg,
        top + height + 60.0 + 18.0 * names.len() as f64,
        title,
    );
    let _ = write!(
        svg,
        "<text x=\"10\" y=\"22\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    svg.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{b}\" stroke=\"#333\"/><line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/>\
         <text x=\"{tx}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">{top_label} {unit}</text><text x=\"{tx}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\">0</text>",
        b = top + height,
        r = left + width,
        tx = left - 4.0,
        ty = top + 4.0,
        unit = esc(unit),
        top_label = if max >= 100.0 { format!("{max:.0}") } else { format!("{max:.3}") },
    ));
    for i in 0..values.len() {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.0}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            x(i),
            top + height + 16.0,
            i + 1
        ));
    }
    for (n, name) in names.iter().enumerate() {
        let colour = PALETTE[n % PALETTE.len()];
        let points: Vec<(f64, f64)> = (0..values.len())
            .filter(|i| &series[*i] == *name)
            .map(|i| (x(i), y(values[i])))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        ));
        for (px, py) in &points {
            svg.push_str(&format!(
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{colour}\"/>"
            ));
        }
        let ly = top + height + 40.0 + 18.0 * n as f64;
        svg.push_str(&format!(
            "<rect x=\"{left}\" y=\"{:.0}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\">{}</text>",
            ly - 10.0,
            left + 18.0,
            ly,
            esc(name)
        ));
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round_and_never_empty() {
        assert_eq!(
            Scale::zero_to(0.0, true),
            Scale {
                step: 1.0,
                top: 1.0
            }
        );
        assert_eq!(Scale::zero_to(f64::NAN, false).top, 1.0);
        assert_eq!(
            Scale::zero_to(241.0, true),
            Scale {
                step: 50.0,
                top: 250.0
            }
        );
        assert_eq!(
            Scale::zero_to(23.0, true),
            Scale {
                step: 5.0,
                top: 25.0
            }
        );
        assert_eq!(
            Scale::zero_to(3.0, true),
            Scale {
                step: 1.0,
                top: 3.0
            }
        );
        let s = Scale::zero_to(0.7, false);
        assert_eq!(s.ticks().len(), 5);
        let labels: Vec<String> = s.ticks().into_iter().map(|t| s.label(t)).collect();
        assert_eq!(labels, ["0.0", "0.2", "0.4", "0.6", "0.8"]);
        assert_eq!(coord(f64::NAN), "0");
    }
}
