//! The saga's state diagram as inline SVG: every status, every change of status the state machine can make
//! ([`domain::status_changes`]), the changes this saga went through (from its history) drawn bold, and its
//! current status outlined and labelled.

use std::collections::BTreeSet;

use maud::{html, Markup};

use crate::domain::{self, Status};

/// Box size of a status, in SVG units.
const BOX: (f64, f64) = (136.0, 34.0);

/// Where each status sits: the forward path along the top, compensation below, the one that needs a human at
/// the bottom between the two compensations it can come from.
fn position(status: Status) -> (f64, f64) {
    match status {
        Status::Executing => (90.0, 40.0),
        Status::Completed => (320.0, 40.0),
        Status::Cancelling => (550.0, 40.0),
        Status::Cancelled => (780.0, 40.0),
        Status::Compensating => (90.0, 150.0),
        Status::Failed => (320.0, 150.0),
        Status::NeedsAttention => (550.0, 250.0),
    }
}

/// The diagram, with `path` (the changes of status this saga made) and `current` marked.
pub fn diagram(path: &BTreeSet<(Status, Status)>, current: Status) -> Markup {
    let visited: BTreeSet<Status> = path.iter().flat_map(|&(from, to)| [from, to]).chain([current]).collect();
    let changes = domain::status_changes();
    html! {
        svg id="diagram" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 870 290" width="870" height="290"
            role="img" aria-label={ "State diagram; this saga is " (current.as_str()) } {
            defs {
                marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7"
                    orient="auto-start-reverse" { path d="M 0 0 L 10 5 L 0 10 z" fill="#888" {} }
                marker id="arrow-taken" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6"
                    orient="auto-start-reverse" { path d="M 0 0 L 10 5 L 0 10 z" fill="#1f5fbf" {} }
            }
            @for &(from, to) in &changes {
                (edge(from, to, path.contains(&(from, to)), changes.contains(&(to, from))))
            }
            @for status in Status::ALL {
                (node(status, visited.contains(&status), status == current))
            }
        }
    }
}

fn edge(from: Status, to: Status, taken: bool, both_ways: bool) -> Markup {
    let ((x1, y1), (x2, y2)) = (position(from), position(to));
    let (dx, dy) = (x2 - x1, y2 - y1);
    let length = dx.hypot(dy);
    // Two edges between the same pair are drawn side by side, each shifted to its own right.
    let shift = if both_ways { 6.0 } else { 0.0 };
    let (ox, oy) = (-dy / length * shift, dx / length * shift);
    let start = clip(x1 + ox, y1 + oy, dx, dy);
    let end = clip(x2 + ox, y2 + oy, -dx, -dy);
    let (class, marker) = if taken { ("edge taken", "url(#arrow-taken)") } else { ("edge", "url(#arrow)") };
    html! {
        line class=(class) id={ "edge-" (from.as_str()) "-" (to.as_str()) }
            x1=(round(start.0)) y1=(round(start.1)) x2=(round(end.0)) y2=(round(end.1))
            stroke=(if taken { "#1f5fbf" } else { "#bbb" }) stroke-width=(if taken { "3" } else { "1.5" })
            marker-end=(marker) {}
    }
}

/// The point where a line leaving the box centred at `(x, y)` towards `(dx, dy)` crosses the box's border.
fn clip(x: f64, y: f64, dx: f64, dy: f64) -> (f64, f64) {
    let (half_w, half_h) = (BOX.0 / 2.0 + 2.0, BOX.1 / 2.0 + 2.0);
    let t = [half_w / dx.abs(), half_h / dy.abs()].into_iter().filter(|t| t.is_finite()).fold(f64::MAX, f64::min);
    (x + dx * t, y + dy * t)
}

fn round(value: f64) -> String {
    format!("{value:.1}")
}

fn node(status: Status, visited: bool, current: bool) -> Markup {
    let (x, y) = position(status);
    let fill = match (current, visited) {
        (true, _) => "#1f5fbf",
        (false, true) => "#dce8fb",
        (false, false) => "#f6f6f6",
    };
    let class = match (current, visited) {
        (true, _) => "state visited current",
        (false, true) => "state visited",
        (false, false) => "state",
    };
    html! {
        g class=(class) id={ "state-" (status.as_str()) } {
            rect x=(round(x - BOX.0 / 2.0)) y=(round(y - BOX.1 / 2.0)) width=(BOX.0) height=(BOX.1) rx="8"
                fill=(fill) stroke=(if current { "#0b2f66" } else { "#888" })
                stroke-width=(if current { "3" } else { "1" }) {}
            text x=(x) y=(y + 5.0) text-anchor="middle" font-size="14"
                fill=(if current { "#fff" } else { "#222" }) { (status.as_str()) }
            @if current {
                text class="marker" x=(x) y=(y - BOX.1 / 2.0 - 6.0) text-anchor="middle" font-size="12"
                    fill="#0b2f66" { "▼ now" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_and_the_current_state_are_marked() {
        let path = [(Status::Executing, Status::Compensating)].into_iter().collect();
        let svg = diagram(&path, Status::Compensating).into_string();
        assert!(svg.contains(r#"<g class="state visited current" id="state-compensating">"#), "{svg}");
        assert!(svg.contains(r#"<g class="state visited" id="state-executing">"#), "{svg}");
        assert!(svg.contains(r#"<g class="state" id="state-completed">"#), "{svg}");
        assert!(svg.contains(r#"class="edge taken" id="edge-executing-compensating""#), "{svg}");
        assert!(svg.contains(r#"class="edge" id="edge-completed-cancelling""#), "{svg}");
        assert_eq!(svg.matches("<line").count(), domain::status_changes().len());
    }

    #[test]
    fn lines_end_at_the_border_of_their_boxes() {
        // Straight down from a box's centre: leaves at its bottom edge, two units out.
        assert_eq!(clip(0.0, 0.0, 0.0, 100.0), (0.0, BOX.1 / 2.0 + 2.0));
        assert_eq!(clip(0.0, 0.0, -100.0, 0.0), (-(BOX.0 / 2.0 + 2.0), 0.0));
    }
}
