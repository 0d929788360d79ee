//! The sweeps' charts: one point per row (x: the row, y: a figure), one coloured line per
//! journal/tx mode, with its legend under the plot.

use std::fmt::Write;

use crate::report::format::esc;

use super::svg_open;

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
        let points: Vec<(f64, f64)> = (0..values.len())
            .filter(|i| &series[*i] == *name)
            .map(|i| (x(i), y(values[i])))
            .collect();
        let legend_y = top + height + 40.0 + 18.0 * n as f64;
        let colour = PALETTE[n % PALETTE.len()];
        series_line(&mut svg, colour, name, &points, (left, legend_y));
    }
    svg.push_str("</svg>");
    svg
}

/// One series: its line, a dot per point, and its legend entry (a square and the name) at
/// `legend`.
fn series_line(
    svg: &mut String,
    colour: &str,
    name: &str,
    points: &[(f64, f64)],
    (left, ly): (f64, f64),
) {
    let path: Vec<String> = points
        .iter()
        .map(|(px, py)| format!("{px:.1},{py:.1}"))
        .collect();
    svg.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
        path.join(" ")
    ));
    for (px, py) in points {
        svg.push_str(&format!(
            "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{colour}\"/>"
        ));
    }
    svg.push_str(&format!(
        "<rect x=\"{left}\" y=\"{:.0}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\">{}</text>",
        ly - 10.0,
        left + 18.0,
        ly,
        esc(name)
    ));
}
