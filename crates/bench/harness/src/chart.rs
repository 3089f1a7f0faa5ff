//! The SVG chart: median throughput of every server in every scenario.
//!
//! The scenarios span two orders of magnitude (tens of thousands of requests per second with
//! sleeps, over a million with pipelined pings), so the throughput axis is logarithmic; each
//! scenario is a group of bars, one per server, in the same colours throughout.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::report::Row;
use crate::server::ServerKind;

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 540);

fn colour(server: ServerKind) -> RGBColor {
    match server {
        ServerKind::Handoff => RGBColor(0x2b, 0x6c, 0xb0),
        ServerKind::HandoffLoops => RGBColor(0x3c, 0x9d, 0x5a),
        ServerKind::Epoll => RGBColor(0x9a, 0x9a, 0x9a),
        ServerKind::Tokio => RGBColor(0xd9, 0x6c, 0x1e),
    }
}

/// Draws the chart of `rows` (scenarios in the order given) into an SVG file at `path`.
pub(crate) fn draw(
    path: &Path,
    scenarios: &[&str],
    servers: &[ServerKind],
    rows: &[Row],
) -> anyhow::Result<()> {
    let series: Vec<Series> = servers
        .iter()
        .map(|&server| Series {
            name: server.binary(),
            colour: colour(server),
            values: scenarios
                .iter()
                .map(|id| {
                    rows.iter()
                        .find(|r| r.scenario == *id && r.server == server)
                        .map(|r| r.throughput_rps)
                })
                .collect(),
        })
        .collect();
    draw_groups(
        path,
        "Median throughput per scenario (req/s, log scale)",
        scenarios,
        &series,
    )
}

/// One server's bars: its value in each group, `None` where it did not run.
#[derive(Debug)]
pub(crate) struct Series {
    /// The legend's name.
    pub(crate) name: &'static str,
    /// The bars' colour.
    pub(crate) colour: RGBColor,
    /// One value per group, in the groups' order.
    pub(crate) values: Vec<Option<f64>>,
}

/// Draws grouped bars of throughput, one bar per series in each group, on a log axis, into an
/// SVG file at `path`.
pub(crate) fn draw_groups(
    path: &Path,
    caption: &str,
    groups: &[&str],
    series: &[Series],
) -> anyhow::Result<()> {
    let values = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .filter(|&v| v > 0.0)
    };
    let top = values().fold(1.0f64, f64::max) * 3.0;
    let bottom = values().fold(top, f64::min).max(1.0) / 2.0;

    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..groups.len() as f64, (bottom..top).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // The group names are written above their groups instead: a numeric axis puts its
        // labels at round numbers, not at the centres of the groups.
        .x_labels(0)
        .y_desc("requests per second")
        .y_label_formatter(&|v| format_rate(*v))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let width = 0.8 / series.len().max(1) as f64;
    for (slot, one) in series.iter().enumerate() {
        let colour = one.colour;
        let bars: Vec<Rectangle<(f64, f64)>> = one
            .values
            .iter()
            .enumerate()
            .filter_map(|(group, value)| {
                let left = group as f64 + 0.1 + slot as f64 * width;
                Some(Rectangle::new(
                    [
                        (left, bottom),
                        (left + width * 0.9, value.as_ref()?.max(bottom)),
                    ],
                    colour.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(one.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    let labels: Vec<Text<'_, (f64, f64), String>> = groups
        .iter()
        .enumerate()
        .map(|(group, id)| {
            let tallest = series
                .iter()
                .filter_map(|s| s.values.get(group).copied().flatten())
                .fold(bottom, f64::max);
            Text::new(
                (*id).to_owned(),
                (group as f64 + 0.4, tallest * 1.25),
                ("sans-serif", 16),
            )
        })
        .collect();
    chart
        .draw_series(labels)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `1.2M`, `340k`, `900`.
fn format_rate(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &'static str, server: ServerKind, throughput_rps: f64) -> Row {
        Row {
            scenario,
            server,
            runs: 1,
            throughput_rps,
            p50_us: 1.0,
            p99_us: 1.0,
            p999_us: 1.0,
            max_us: 1.0,
            context_switches_per_request: 0.0,
            server_cpu_us_per_request: 0.0,
            loadgen_cpu_us_per_request: 0.0,
            vs_tokio: None,
            p99_vs_tokio: None,
            cpu_vs_tokio: None,
            threads: Vec::new(),
            cpus_busy: 0.0,
            bound: crate::threads::Bound::Cpus {
                busy: 2.0,
                cpus: 2,
                busiest: None,
            },
        }
    }

    #[test]
    fn draws_a_bar_per_server_and_scenario_with_labels() {
        let path = std::env::temp_dir().join(format!("bench-chart-{}.svg", std::process::id()));
        let rows = [
            row("S1", ServerKind::Handoff, 120_000.0),
            row("S1", ServerKind::Tokio, 84_000.0),
            row("S3", ServerKind::Handoff, 1_900_000.0),
            row("S3", ServerKind::Tokio, 1_400_000.0),
        ];
        let servers = [ServerKind::Handoff, ServerKind::Tokio];
        draw(&path, &["S1", "S3"], &servers, &rows).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in ["S1", "S3", "handoff_server", "tokio_server"] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Four bars and two legend swatches, filled with the servers' colours.
        assert_eq!(svg.matches("fill=\"#2B6CB0\"").count(), 3, "{svg}");
    }

    #[test]
    fn rates_are_abbreviated() {
        assert_eq!(format_rate(1_400_000.0), "1.4M");
        assert_eq!(format_rate(84_000.0), "84k");
        assert_eq!(format_rate(900.0), "900");
    }
}
