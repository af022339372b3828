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

/// An answer as the API gave it, for scripts: the same JSON, pretty-printed, one value per run.
pub fn json(body: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string()))
}

/// `GET /admin/sagas`: the page, then where it is in the total.
pub fn sagas(body: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&body["sagas"])
        .iter()
        .map(|s| {
            ["id", "order_id", "user_id", "status", "reason", "retries", "created_at", "updated_at"]
                .iter()
                .map(|k| plain(&s[*k]))
                .collect()
        })
        .collect();
    let total = body["total"].as_u64().unwrap_or(0);
    if total == 0 {
        return "no sagas match\n".into();
    }
    if rows.is_empty() {
        return format!("none on this page; {total} match\n");
    }
    let from = body["offset"].as_u64().unwrap_or(0) + 1;
    let to = from + rows.len() as u64 - 1;
    let mut out = table(&["SAGA", "ORDER", "USER", "STATUS", "REASON", "RETRIES", "CREATED", "UPDATED"], &rows);
    let _ = writeln!(out, "{from}-{to} of {total}");
    out
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
        ("next retry", "next_retry_at"),
        ("created", "created_at"),
        ("updated", "updated_at"),
    ] {
        let _ = writeln!(out, "{label:<11} {}", plain(&saga[key]));
    }
    let reason = match &body["reason"] {
        Value::Null => "-".to_owned(),
        reason => tagged(reason, "kind"),
    };
    let actions: Vec<String> = items(&body["allowed_actions"]).iter().map(plain).collect();
    let _ = writeln!(out, "{:<11} {reason}", "reason");
    if !body["problem"].is_null() {
        let _ = writeln!(out, "{:<11} {}", "problem", plain(&body["problem"]));
    }
    let _ = writeln!(out, "{:<11} {} retries since the last progress", "attempts", plain(&body["attempts"]));
    let _ = writeln!(out, "{:<11} {}", "trace", plain(&body["trace_id"]));
    let _ = writeln!(out, "{:<11} {}", "allowed", if actions.is_empty() { "-".to_owned() } else { actions.join(", ") });
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

/// `POST /admin/sagas/bulk/{action}`: the dry run's sagas, or what came of each.
pub fn bulk(body: &Value) -> String {
    let taken = items(&body["sagas"]);
    let mut out = format!("{} sagas match; {} taken (oldest first)\n", plain(&body["matched"]), taken.len());
    if body["dry_run"] == Value::Bool(true) {
        let rows: Vec<Vec<String>> = taken.iter().map(|s| vec![plain(&s["saga_id"]), plain(&s["status"])]).collect();
        if !rows.is_empty() {
            out.push_str(&table(&["SAGA", "STATUS"], &rows));
        }
        return out;
    }
    let rows: Vec<Vec<String>> = items(&body["results"])
        .iter()
        .map(|r| match &r["refused"] {
            Value::String(refusal) => vec![plain(&r["saga_id"]), format!("refused: {refusal}")],
            _ => vec![plain(&r["saga_id"]), format!("now {}", plain(&r["status"]))],
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&table(&["SAGA", "OUTCOME"], &rows));
    }
    let refused = items(&body["results"]).iter().filter(|r| r["refused"].is_string()).count();
    let _ = writeln!(out, "{} {} done, {refused} refused", plain(&body["action"]), rows.len() - refused);
    out
}

/// `GET /admin/failures`.
pub fn failures(body: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&body["failures"])
        .iter()
        .map(|g| ["status", "reason", "count", "oldest", "newest", "sagas"].iter().map(|k| plain(&g[*k])).collect())
        .collect();
    if rows.is_empty() {
        return "no failed sagas, none needing attention\n".into();
    }
    table(&["STATUS", "REASON", "SAGAS", "OLDEST", "NEWEST", "LIST"], &rows)
}

/// What an audit row's result says, in a few words.
fn outcome(result: &Value) -> String {
    match (&result["state"]["state"], &result["refused"], &result["done"]) {
        (Value::String(status), _, _) => format!("now {status}"),
        (_, Value::String(refusal), _) => format!("refused: {refusal}"),
        (_, refused, Value::Number(done)) => format!("{done} done, {refused} refused"),
        _ => result.to_string(),
    }
}

/// `GET /admin/audit`.
pub fn audit(body: &Value) -> String {
    let rows: Vec<Vec<String>> = items(&body["entries"])
        .iter()
        .map(|e| {
            let sagas: Vec<String> = items(&e["saga_ids"]).iter().map(plain).collect();
            let mut row: Vec<String> = ["at", "actor", "credential", "action"].iter().map(|k| plain(&e[*k])).collect();
            row.extend([sagas.join(","), outcome(&e["result"])]);
            row
        })
        .collect();
    let mut out = table(&["AT", "ACTOR", "CREDENTIAL", "ACTION", "SAGAS", "RESULT"], &rows);
    let _ = writeln!(out, "{} of {} actions", rows.len(), plain(&body["total"]));
    out
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
    fn a_page_of_sagas_ends_with_where_it_is_in_the_total() {
        let saga = json!({"id": "s", "order_id": "o", "user_id": "u", "status": "failed", "reason": "timed_out",
            "retries": 0, "created_at": "c", "updated_at": "u"});
        let out = sagas(&json!({"sagas": [saga], "total": 7, "limit": 1, "offset": 3}));
        assert!(out.ends_with("s     o      u     failed  timed_out  0        c        u\n4-4 of 7\n"), "{out}");
        assert_eq!(sagas(&json!({"sagas": [], "total": 7, "offset": 9})), "none on this page; 7 match\n");
        assert_eq!(sagas(&json!({"sagas": [], "total": 0, "offset": 0})), "no sagas match\n");
    }

    #[test]
    fn json_is_the_answer_itself() {
        let body = json!({"sagas": [], "total": 0});
        assert_eq!(serde_json::from_str::<Value>(&json(&body)).unwrap(), body);
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
