//! Scales and axes for the charts: a [`Scale`] from 0 to a round top with round ticks and
//! their labels, and an [`Axis`] (a label and its [`Series`]) that picks its scale from its
//! values and its colour from its series. Numbers only; draws nothing.

use crate::report::format::fixed;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::chart::coord;

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
