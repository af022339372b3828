//! The admin API's answers as text for a terminal: aligned tables with a header row, and key/value blocks.

use std::fmt::Write as _;

use serde_json::Value;

/// Rows under `headers`, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// A JSON value as text: strings without quotes, null as `-`.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `{"<tag>": "name", ...rest}` as `name` followed by the rest in compact JSON, if any.
fn tagged(value: &Value, tag: &str) -> String {
    let name = plain(&value[tag]);
    match value.as_object() {
        Some(fields) if fields.len() > 1 => {
            let rest: serde_json::Map<String, Value> =
                fields.iter().filter(|(k, _)| k.as_str() != tag).map(|(k, v)| (k.clone(), v.clone())).collect();
            format!("{name} {}", Value::Object(rest))
        }
        _ => name,
    }
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// `GET /admin/sagas`.
pub fn sagas(body: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&body["sagas"])
        .iter()
        .map(|s| {
            ["id", "order_id", "user_id", "status", "retries", "updated_at"].iter().map(|k| plain(&s[*k])).collect()
        })
        .collect();
    if rows.is_empty() {
        return "no sagas match\n".into();
    }
    table(&["SAGA", "ORDER", "USER", "STATUS", "RETRIES", "UPDATED"], &rows)
}

/// `GET /admin/sagas/{id}`.
pub fn saga(body: &Value) -> String {
    let saga = &body["saga"];
    let mut out = String::new();
    for (label, key) in [
        ("saga", "id"),
        ("order", "order_id"),
        ("user", "user_id"),
        ("status", "status"),
        ("version", "version"),
        ("retries", "retries"),
        ("next retry", "next_retry_at"),
        ("created", "created_at"),
        ("updated", "updated_at"),
    ] {
        let _ = writeln!(out, "{label:<11} {}", plain(&saga[key]));
    }
    let lines: Vec<String> = items(&saga["request"]["items"])
        .iter()
        .map(|i| format!("{} x{}", plain(&i["item_id"]), plain(&i["quantity"])))
        .collect();
    let _ = writeln!(out, "{:<11} {} (total {})", "items", lines.join(", "), plain(&saga["request"]["total"]));
    let _ = writeln!(out, "{:<11} {}\n", "state", saga["state"]);
    let rows: Vec<Vec<String>> = items(&body["history"])
        .iter()
        .map(|line| {
            let commands: Vec<String> = items(&line["commands"]).iter().map(|c| tagged(c, "command")).collect();
            vec![
                plain(&line["at"]),
                tagged(&line["event"], "event"),
                format!("{} -> {}", plain(&line["from_status"]), plain(&line["to_status"])),
                commands.join(", "),
            ]
        })
        .collect();
    out.push_str(&table(&["AT", "EVENT", "FROM -> TO", "COMMANDS"], &rows));
    out
}

/// `POST /admin/sagas/{id}/retry|abort`.
pub fn action(body: &Value) -> String {
    format!(
        "{} of saga {} done: now {}\n",
        plain(&body["action"]),
        plain(&body["saga_id"]),
        plain(&body["state"]["state"])
    )
}

/// The statuses as operators read them: the one that needs a human first, then in the order a saga goes
/// through them.
const LIFECYCLE: [&str; 7] =
    ["needs_attention", "executing", "compensating", "completed", "failed", "cancelling", "cancelled"];

/// `GET /admin/stats`, in [`LIFECYCLE`] order (statuses this tool does not know go last).
pub fn stats(body: &Value) -> String {
    let mut counts: Vec<(&String, &Value)> = body["sagas"].as_object().into_iter().flatten().collect();
    counts.sort_by_key(|(status, _)| LIFECYCLE.iter().position(|s| s == status).unwrap_or(LIFECYCLE.len()));
    let rows: Vec<Vec<String>> = counts.into_iter().map(|(status, n)| vec![status.clone(), plain(n)]).collect();
    table(&["STATUS", "SAGAS"], &rows)
}

/// `GET /admin/dead-letters`.
pub fn dead_letters(body: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&body["messages"])
        .iter()
        .map(|m| {
            ["id", "kind", "saga_id", "original_queue", "reason", "died_at", "deaths", "body"]
                .iter()
                .map(|k| plain(&m[*k]))
                .collect()
        })
        .collect();
    if rows.is_empty() {
        return "the dead-letter queue is empty\n".into();
    }
    table(&["ID", "KIND", "SAGA", "QUEUE", "REASON", "DIED", "DEATHS", "BODY"], &rows)
}

/// `POST /admin/dead-letters/{id}/replay` and `.../discard`.
pub fn dead_letter_taken(body: &Value) -> String {
    let message = &body["message"];
    match body["action"].as_str() {
        Some("replay") => format!("replayed {} to {}\n", plain(&message["id"]), plain(&message["original_queue"])),
        _ => format!("discarded {} (kept in the audit log)\n", plain(&message["id"])),
    }
}

/// `POST /admin/dead-letters/replay`.
pub fn replay(body: &Value) -> String {
    format!(
        "replayed {} dead letters; {} left in place (no queue to go back to)\n",
        plain(&body["replayed"]),
        plain(&body["skipped"])
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let out = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()], vec!["b".into(), "y".into()]]);
        assert_eq!(out, "A          LONGER\nwide cell  x\nb          y\n");
    }

    #[test]
    fn stats_list_every_status() {
        let out = stats(&json!({"sagas": {"failed": 0, "executing": 2, "compensating": 1}}));
        assert_eq!(out, "STATUS        SAGAS\nexecuting     2\ncompensating  1\nfailed        0\n");
    }

    #[test]
    fn history_lines_show_events_and_commands() {
        let body = json!({"saga": {"id": "s", "request": {"items": [{"item_id": "a", "quantity": 2}], "total": 9}},
            "history": [{"at": "t0", "event": {"event": "start"}, "from_status": null, "to_status": "executing",
                         "commands": [{"command": "reserve_stock"}, {"command": "charge_payment"}]}]});
        let out = saga(&body);
        assert!(out.contains("items       a x2 (total 9)"), "{out}");
        assert!(out.contains("t0  start  - -> executing  reserve_stock, charge_payment"), "{out}");
    }
}
