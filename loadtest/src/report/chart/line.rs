//! Line charts over a run's time line ([`LineChart`]): a left axis and an optional right
//! one, shaded fault bands and restart marks, whole-second x ticks, one line per series with
//! a dot per point when there are few. An empty time line draws an empty frame that says so.

use std::fmt::Write;

use crate::report::format::{esc, fixed};

use super::scale::{Axis, Scale, Series};
use super::{coord, legend, svg_open, svg_title, WIDTH};

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
