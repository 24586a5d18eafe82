//! Reading Redis stream replies (`XRANGE` / `XREVRANGE`) as plain entries.

use std::collections::HashMap;

use redis::Value;

/// (entry id, fields) of each `XRANGE` entry.
pub(crate) fn parse_entries(reply: &Value) -> Vec<(String, HashMap<String, String>)> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else {
                return None;
            };
            let [id, Value::Array(fields)] = parts.as_slice() else {
                return None;
            };
            let map = fields
                .chunks(2)
                .filter_map(|pair| match pair {
                    [k, v] => Some((text(k)?, text(v)?)),
                    _ => None,
                })
                .collect();
            Some((text(id)?, map))
        })
        .collect()
}
