//! Charts as hand-written inline SVG, for every HTML page lockbench writes (a run's report,
//! a sweep, a breakpoint search): scales with round ticks and the axes that use them
//! (`scale.rs`), line charts over a run's time line (`line.rs`), a run's latency bars
//! (`bar.rs`), grouped bars per category for a sweep's rows (`groups.rs`) and columns over a
//! breakpoint search's steps with the gate's limit (`columns.rs`); here the colours, the
//! frame every chart opens with and the legends. Coordinates go through [`coord`], so an
//! empty time line or all-zero values draw an empty frame, never NaN; every piece of text
//! goes through the one escaping function. Draws what it is given; measures and decides
//! nothing.

use std::fmt::Write;

use super::format::esc;

mod bar;
mod columns;
mod groups;
mod line;
mod scale;

pub(crate) use bar::latency_bars;
pub(crate) use columns::{Column, ColumnChart};
pub(crate) use groups::{Group, GroupChart};
pub(crate) use line::LineChart;
pub(crate) use scale::{Axis, Series};

pub(crate) const BLUE: &str = "#2b6cb0";
pub(crate) const RED: &str = "#c53030";
pub(crate) const PURPLE: &str = "#6b46c1";
pub(crate) const GREEN: &str = "#2f855a";

pub(crate) const WIDTH: f64 = 900.0;

/// A coordinate for SVG: one decimal, and 0 for anything not finite.
pub(crate) fn coord(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1}")
    } else {
        "0".to_owned()
    }
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
