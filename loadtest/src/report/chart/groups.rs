//! Grouped horizontal bars over categories ([`GroupChart`]): one group per category (a
//! sweep's row), its label on the left axis, wrapped over up to three lines, one bar per
//! series where several figures share a unit (p99 of several requests, in ms). A value that
//! was not measured is drawn as the words that say why, never as a bar of 0; a chart whose
//! values are all 0 is one line that says so.

use std::fmt::Write;

use crate::report::format::esc;

use super::scale::Scale;
use super::{coord, legend, svg_open, svg_title, WIDTH};

/// One category and its values, one per series: `Err` says why a value is missing.
pub(crate) struct Group {
    pub(crate) label: String,
    pub(crate) values: Vec<Result<f64, String>>,
}

/// Grouped horizontal bars, one group per category.
pub(crate) struct GroupChart<'a> {
    pub(crate) title: &'a str,
    /// The value axis' caption ("lock errors", "milliseconds").
    pub(crate) axis: &'a str,
    pub(crate) integer: bool,
    /// (name, colour) per series; the legend is drawn when there are several.
    pub(crate) series: &'a [(&'a str, &'a str)],
    pub(crate) groups: &'a [Group],
    /// How a value is written at the end of its bar.
    pub(crate) format: fn(f64) -> String,
}

const BAR: f64 = 13.0;
const LINE: f64 = 14.0;
/// Characters per line of a category's label before it wraps.
const LABEL_CHARS: usize = 40;
const LABEL_LINES: usize = 3;

/// Where the groups sit: the label column, the plot, and each group's top.
struct Layout {
    left: f64,
    top: f64,
    bottom: f64,
    plot_w: f64,
    height: f64,
    /// Each group's top and its label's lines.
    groups: Vec<(f64, Vec<String>)>,
}

impl GroupChart<'_> {
    /// The chart in a `<figure>`; when no value is above 0, the line `zero` in its place, with
    /// how many values were not measured and why.
    pub(crate) fn figure_or(&self, zero: &str) -> String {
        let values = || self.groups.iter().flat_map(|g| &g.values);
        if values().any(|v| v.as_ref().is_ok_and(|v| *v > 0.0)) {
            return format!("<figure>{}</figure>\n", self.svg());
        }
        let missing: Vec<&String> = values().filter_map(|v| v.as_ref().err()).collect();
        let note = match missing.first() {
            Some(why) => format!(" ({} of the values: {why})", missing.len()),
            None => String::new(),
        };
        format!("<p class=\"absent\">{}{}</p>\n", esc(zero), esc(&note))
    }

    pub(crate) fn svg(&self) -> String {
        let at = self.layout();
        let mut s = String::new();
        svg_open(&mut s, at.height, self.title);
        svg_title(&mut s, self.title);
        if self.series.len() > 1 {
            legend(
                &mut s,
                at.left,
                38.0,
                self.series
                    .iter()
                    .map(|(name, color)| (*name, *color, true)),
            );
        }
        let max = self
            .groups
            .iter()
            .flat_map(|g| g.values.iter().filter_map(|v| v.as_ref().ok().copied()))
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let scale = Scale::zero_to(max, self.integer);
        self.axes(&mut s, &at, scale);
        for (group, (y0, lines)) in self.groups.iter().zip(&at.groups) {
            self.group(&mut s, &at, scale, group, *y0, lines);
        }
        s.push_str("</svg>");
        s
    }

    fn layout(&self) -> Layout {
        let labels: Vec<Vec<String>> = self.groups.iter().map(|g| wrap(&g.label)).collect();
        let longest = labels
            .iter()
            .flatten()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0);
        let left = (longest as f64 * 6.6 + 24.0).clamp(90.0, 300.0);
        let top = if self.series.len() > 1 { 56.0 } else { 40.0 };
        let bars = self.series.len().max(1) as f64 * (BAR + 2.0);
        let mut y = top;
        let mut groups = Vec::new();
        for lines in labels {
            let h = bars.max(lines.len() as f64 * LINE) + 12.0;
            groups.push((y, lines));
            y += h;
        }
        let bottom = y.max(top + 20.0);
        Layout {
            left,
            top,
            bottom,
            plot_w: WIDTH - left - 90.0,
            height: bottom + 44.0,
            groups,
        }
    }

    /// The value axis: grid, tick labels, the axes and the caption.
    fn axes(&self, s: &mut String, at: &Layout, scale: Scale) {
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
            "<line class=\"axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            coord(at.left + at.plot_w / 2.0),
            coord(at.height - 8.0),
            esc(self.axis),
            l = coord(at.left),
            r = coord(at.left + at.plot_w),
            t = coord(at.top),
            b = coord(at.bottom)
        );
    }

    /// One category: its label's lines right-aligned against the axis, and its bars.
    fn group(
        &self,
        s: &mut String,
        at: &Layout,
        scale: Scale,
        g: &Group,
        y0: f64,
        lines: &[String],
    ) {
        let _ = write!(s, "<g><title>{}</title>", esc(&g.label));
        for (i, line) in lines.iter().enumerate() {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                coord(at.left - 8.0),
                coord(y0 + 11.0 + i as f64 * LINE),
                esc(line)
            );
        }
        s.push_str("</g>");
        for (j, (value, (name, color))) in g.values.iter().zip(self.series).enumerate() {
            let y = y0 + j as f64 * (BAR + 2.0);
            match value {
                Ok(v) => {
                    let w = scale.frac(*v) * at.plot_w;
                    let text = (self.format)(*v);
                    let _ = write!(
                        s,
                        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\"><title>{}: {}: {text}</title></rect><text x=\"{}\" y=\"{}\">{text}</text>",
                        coord(at.left),
                        coord(y),
                        coord(w),
                        coord(BAR),
                        esc(&g.label),
                        esc(name),
                        coord(at.left + w + 4.0),
                        coord(y + BAR - 2.0),
                    );
                }
                Err(why) => {
                    let _ = write!(
                        s,
                        "<text x=\"{}\" y=\"{}\" style=\"fill:#718096\">{}</text>",
                        coord(at.left + 4.0),
                        coord(y + BAR - 2.0),
                        esc(why)
                    );
                }
            }
        }
    }
}

/// A label as up to three lines of about 40 characters, broken at spaces; the last line
/// ends with "…" when the label is longer (the whole label is the group's tooltip).
fn wrap(label: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in label.split_whitespace() {
        let len = line.chars().count() + word.chars().count() + 1;
        if !line.is_empty() && len > LABEL_CHARS {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    let cut = |l: &str| {
        let mut short: String = l.chars().take(LABEL_CHARS - 1).collect();
        short.push('…');
        short
    };
    if lines.len() > LABEL_LINES {
        lines.truncate(LABEL_LINES);
        let last = lines.pop().unwrap_or_default();
        lines.push(if last.chars().count() >= LABEL_CHARS {
            cut(&last)
        } else {
            format!("{last} …")
        });
    }
    lines
        .into_iter()
        .map(|l| {
            if l.chars().count() > LABEL_CHARS {
                cut(&l)
            } else {
                l
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_wrap_at_spaces_and_long_ones_are_cut() {
        assert_eq!(wrap("tx_mode=deferred"), ["tx_mode=deferred"]);
        let lines =
            wrap("journal_mode=delete tx_mode=deferred incident presets, PRAGMA-only 30 s timeout");
        assert_eq!(
            lines,
            [
                "journal_mode=delete tx_mode=deferred",
                "incident presets, PRAGMA-only 30 s",
                "timeout"
            ]
        );
        let long = wrap(&"word ".repeat(40));
        assert_eq!(long.len(), 3);
        assert!(long[2].ends_with('…'), "{long:?}");
        assert!(wrap(&"x".repeat(60))[0].ends_with('…'));
        assert_eq!(wrap(""), [""]);
    }
}
