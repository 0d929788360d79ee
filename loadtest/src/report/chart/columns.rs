//! Vertical bars over an ordered dimension ([`ColumnChart`]): a breakpoint search's steps,
//! each value of the varied dimension a column of the figure that decided, green where the
//! step passed and red where it failed, with the gate's limit as a horizontal dashed line.
//! A figure that was not measured is written as such, never drawn as 0.

use std::fmt::Write;

use crate::report::format::esc;

use super::scale::Scale;
use super::{coord, legend, svg_open, svg_title, GREEN, RED, WIDTH};

/// One step: the dimension's value as written under its column, its figure (`Err`: why
/// there is none), and whether it passed.
pub(crate) struct Column {
    pub(crate) label: String,
    pub(crate) value: Result<f64, String>,
    pub(crate) passed: bool,
}

pub(crate) struct ColumnChart<'a> {
    pub(crate) title: &'a str,
    /// Under the columns: the varied dimension ("users.kiosks").
    pub(crate) x_label: &'a str,
    /// Beside the value axis: the figure ("p99_ms POST /api/registrations").
    pub(crate) y_label: &'a str,
    pub(crate) integer: bool,
    pub(crate) columns: &'a [Column],
    /// The gate's limit, drawn as a horizontal line.
    pub(crate) limit: Option<f64>,
    pub(crate) format: fn(f64) -> String,
}

const HEIGHT: f64 = 340.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 90.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = HEIGHT - 52.0;

impl ColumnChart<'_> {
    pub(crate) fn svg(&self) -> String {
        let mut s = String::new();
        svg_open(&mut s, HEIGHT, self.title);
        svg_title(&mut s, self.title);
        let mut keys = vec![("passed", GREEN, true), ("failed", RED, true)];
        if self.limit.is_some() {
            keys.push(("gate limit", "#1a202c", false));
        }
        legend(&mut s, LEFT, 38.0, keys.into_iter());
        let max = self
            .columns
            .iter()
            .filter_map(|c| c.value.as_ref().ok().copied())
            .chain(self.limit)
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let scale = Scale::zero_to(max, self.integer);
        self.axes(&mut s, scale);
        let slot = (WIDTH - LEFT - RIGHT) / self.columns.len().max(1) as f64;
        for (i, c) in self.columns.iter().enumerate() {
            column(&mut s, scale, LEFT + slot * i as f64, slot, c, self.format);
        }
        if let Some(limit) = self.limit {
            let y = BOTTOM - scale.frac(limit) * (BOTTOM - TOP);
            let _ = write!(
                s,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#1a202c\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{}\" style=\"font-weight:600\">limit {}</text>",
                coord(LEFT),
                coord(WIDTH - RIGHT),
                coord(WIDTH - RIGHT + 6.0),
                coord(y + 4.0),
                esc(&(self.format)(limit)),
                y = coord(y)
            );
        }
        s.push_str("</svg>");
        s
    }

    /// The value axis (grid and labels), the axes and both captions.
    fn axes(&self, s: &mut String, scale: Scale) {
        for tick in scale.ticks() {
            let y = BOTTOM - scale.frac(tick) * (BOTTOM - TOP);
            let _ = write!(
                s,
                "<line class=\"grid\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                coord(LEFT),
                coord(WIDTH - RIGHT),
                coord(LEFT - 6.0),
                coord(y + 4.0),
                scale.label(tick),
                y = coord(y)
            );
        }
        let (x, y) = (coord(16.0), coord((TOP + BOTTOM) / 2.0));
        let _ = write!(
            s,
            "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" transform=\"rotate(-90 {x} {y})\">{}</text>",
            esc(self.y_label)
        );
        let _ = write!(
            s,
            "<line class=\"axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            coord((LEFT + WIDTH - RIGHT) / 2.0),
            coord(HEIGHT - 8.0),
            esc(self.x_label),
            l = coord(LEFT),
            r = coord(WIDTH - RIGHT),
            t = coord(TOP),
            b = coord(BOTTOM)
        );
    }
}

/// One step's column in its slot from `x`, its value over it, its label under it.
fn column(s: &mut String, scale: Scale, x: f64, slot: f64, c: &Column, format: fn(f64) -> String) {
    let w = (slot * 0.6).min(60.0);
    let cx = x + slot / 2.0;
    let color = if c.passed { GREEN } else { RED };
    let word = if c.passed { "passed" } else { "failed" };
    match &c.value {
        Ok(v) => {
            let h = scale.frac(*v) * (BOTTOM - TOP);
            let text = format(*v);
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\"><title>{}: {text}, {word}</title></rect><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{text}</text>",
                coord(cx - w / 2.0),
                coord(BOTTOM - h),
                coord(w),
                coord(h),
                esc(&c.label),
                coord(cx),
                coord(BOTTOM - h - 5.0),
            );
        }
        Err(why) => {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" style=\"fill:{color}\"><title>{}</title>{word}: not measured</text>",
                coord(cx),
                coord(BOTTOM - 8.0),
                esc(why),
            );
        }
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        coord(cx),
        coord(BOTTOM + 17.0),
        esc(&c.label)
    );
}
