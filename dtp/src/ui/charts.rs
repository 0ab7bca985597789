//! Line charts drawn here as inline SVG (no chart library, no script): one point per minute.

use std::fmt::Write;

use maud::{html, Markup};

/// One line of a chart; `None` leaves a gap (a minute without observations).
pub(super) struct Series<'a> {
    pub label: &'a str,
    /// Colour class (`s1`..`s4` in the stylesheet).
    pub class: &'a str,
    pub points: Vec<Option<f64>>,
}

const WIDTH: f64 = 400.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// A chart of `series` over `span` (the label of the x axis, e.g. "last 60 min"), with the
/// y axis in `unit`.
pub(super) fn line_chart(title: &str, unit: &str, span: &str, series: &[Series]) -> Markup {
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let top = nice_ceiling(top);
    let slots = series
        .iter()
        .map(|s| s.points.len())
        .max()
        .unwrap_or(0)
        .max(2);
    #[allow(clippy::cast_precision_loss)]
    let step = (WIDTH - LEFT) / (slots - 1) as f64;
    let y = |v: f64| TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - v / top);
    let label = format!("{title}: {}", summary(series, unit));
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(label) {
                @for fraction in [0.0, 0.5, 1.0] {
                    line.grid x1=(LEFT) x2=(WIDTH) y1=(y(top * fraction)) y2=(y(top * fraction)) {}
                    text.axis x=(LEFT - 6.0) y=(y(top * fraction) + 4.0) text-anchor="end" { (axis_label(top * fraction, unit)) }
                }
                text.axis x=(LEFT) y=(HEIGHT - 4.0) { (span) }
                text.axis x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { "now" }
                @for s in series {
                    @for run in runs(&s.points, step, &y) {
                        @if run.contains(' ') {
                            polyline class={"line " (s.class)} points=(run) {}
                        } @else {
                            circle class={"dot " (s.class)} r="2" cx=(run.split(',').next().unwrap_or("0")) cy=(run.split(',').nth(1).unwrap_or("0")) {}
                        }
                    }
                }
            }
            ul.legend {
                @for s in series {
                    li data-series=(s.label) data-total=(total(&s.points)) { span class={"swatch " (s.class)} {} (s.label) " " span.muted { (legend_figure(&s.points, unit)) } }
                }
            }
        }
    }
}

/// Each run of consecutive points as an SVG `points` list.
fn runs(points: &[Option<f64>], step: f64, y: &impl Fn(f64) -> f64) -> Vec<String> {
    let mut runs = Vec::new();
    let mut current = String::new();
    for (i, point) in points.iter().enumerate() {
        match point {
            Some(v) => {
                #[allow(clippy::cast_precision_loss)]
                let x = LEFT + step * i as f64;
                if !current.is_empty() {
                    current.push(' ');
                }
                let _ = write!(current, "{x:.1},{:.1}", y(*v));
            }
            None if !current.is_empty() => runs.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// The smallest of 1, 2, 2.5, 5 × 10^k at or above `value` (at least 1).
fn nice_ceiling(value: f64) -> f64 {
    if value <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&candidate| candidate >= value)
        .unwrap_or(value)
}

fn axis_label(value: f64, unit: &str) -> String {
    if unit == "ms" && value >= 1000.0 {
        format!("{} s", trim(value / 1000.0))
    } else if unit.is_empty() {
        trim(value)
    } else {
        format!("{} {unit}", trim(value))
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").unwrap_or(&text).to_owned()
}

fn total(points: &[Option<f64>]) -> f64 {
    points.iter().flatten().sum()
}

/// A count's total over the chart; a latency's latest value.
fn legend_figure(points: &[Option<f64>], unit: &str) -> String {
    if unit.is_empty() {
        format!("{} in all", trim(total(points)))
    } else {
        latest(points, unit)
    }
}

fn latest(points: &[Option<f64>], unit: &str) -> String {
    match points.iter().rev().flatten().next() {
        Some(v) => format!("last {}", axis_label(*v, unit)),
        None => "no data".to_owned(),
    }
}

fn summary(series: &[Series], unit: &str) -> String {
    series
        .iter()
        .map(|s| format!("{} {}", s.label, latest(&s.points, unit)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_y_axis_ends_at_a_round_number() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(2400.0), 2500.0);
        assert_eq!(nice_ceiling(5000.0), 5000.0);
    }

    #[test]
    fn gaps_split_the_line() {
        let points = [Some(1.0), Some(2.0), None, Some(3.0)];
        let runs = runs(&points, 10.0, &|v| v);
        assert_eq!(
            runs,
            vec!["48.0,1.0 58.0,2.0".to_owned(), "78.0,3.0".to_owned()]
        );
    }
}
