//! The overview's chart of sagas started, completed and failed per minute over the last hour, as inline SVG:
//! one line per series over the minutes [`store::activity_per_minute`] returns, with each minute's numbers as a
//! tooltip.

use maud::{html, Markup};

use crate::store::MinuteActivity;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
/// Room for the axis labels.
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 20.0;

/// How a series reads its count from a minute.
type Count = fn(&MinuteActivity) -> i64;

/// The series: name, colour and the count it reads from a minute.
const SERIES: [(&str, &str, Count); 3] = [
    ("started", "#1f5fbf", |m| m.started),
    ("completed", "#1b7a1b", |m| m.completed),
    ("failed", "#b00", |m| m.failed),
];

/// The chart of `minutes`, oldest first.
pub fn chart(minutes: &[MinuteActivity]) -> Markup {
    let top = minutes.iter().flat_map(|m| SERIES.map(|(_, _, count)| count(m))).max().unwrap_or(0).max(1);
    let slot = if minutes.len() > 1 { (WIDTH - LEFT) / (minutes.len() - 1) as f64 } else { 0.0 };
    let x = |i: usize| LEFT + i as f64 * slot;
    let y = |n: i64| (HEIGHT - BOTTOM) * (1.0 - n as f64 / top as f64);
    let totals = SERIES.map(|(_, _, count)| minutes.iter().map(count).sum::<i64>());
    html! {
        svg id="activity" xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 24.0) }
            width=(WIDTH) height=(HEIGHT + 24.0) role="img"
            aria-label={ "Sagas per minute over the last hour: " (totals[0]) " started, " (totals[1]) " completed, "
                (totals[2]) " failed" } {
            line x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) stroke="#888" {}
            line x1=(LEFT) y1="0" x2=(LEFT) y2=(HEIGHT - BOTTOM) stroke="#888" {}
            text x=(LEFT - 4.0) y="10" text-anchor="end" font-size="11" { (top) }
            text x=(LEFT - 4.0) y=(HEIGHT - BOTTOM) text-anchor="end" font-size="11" { "0" }
            text x=(LEFT) y=(HEIGHT - 4.0) font-size="11" { "−" (minutes.len().saturating_sub(1)) " min" }
            text x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" font-size="11" { "now" }
            @for (name, colour, count) in SERIES {
                @let points: Vec<String> = minutes.iter().enumerate()
                    .map(|(i, m)| format!("{:.1},{:.1}", x(i), y(count(m)))).collect();
                polyline class={ "series " (name) } points=(points.join(" ")) fill="none" stroke=(colour)
                    stroke-width="2" {}
            }
            @for (i, minute) in minutes.iter().enumerate() {
                rect x=(format!("{:.1}", x(i) - slot / 2.0)) y="0" width=(format!("{slot:.1}"))
                    height=(HEIGHT - BOTTOM) fill="transparent" {
                    title { (minute.minute.format("%H:%M")) ": " (minute.started) " started, " (minute.completed)
                        " completed, " (minute.failed) " failed" }
                }
            }
            @for (i, (name, colour, _)) in SERIES.iter().enumerate() {
                text class={ "legend " (name) } x=(LEFT + 10.0 + i as f64 * 150.0) y=(HEIGHT + 18.0) font-size="12"
                    fill=(colour) { "■ " (name) " " (totals[i]) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn each_series_is_a_line_scaled_to_the_busiest_minute() {
        let minute = |m: u32, started, completed, failed| MinuteActivity {
            minute: Utc.with_ymd_and_hms(2026, 12, 2, 4, m, 0).unwrap(),
            started,
            completed,
            failed,
        };
        let svg = chart(&[minute(0, 4, 0, 0), minute(1, 2, 3, 1)]).into_string();
        assert!(svg.contains(r#"class="series started" points="40.0,0.0 720.0,70.0""#), "{svg}");
        assert!(svg.contains(r#"class="series failed" points="40.0,140.0 720.0,105.0""#), "{svg}");
        assert!(svg.contains("04:01: 2 started, 3 completed, 1 failed"), "{svg}");
        assert!(svg.contains("■ started 6") && svg.contains("■ completed 3") && svg.contains("■ failed 1"), "{svg}");
    }
}
