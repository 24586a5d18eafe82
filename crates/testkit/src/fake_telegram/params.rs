//! A call's parameters, however they came: a JSON body (teloxide without files),
//! a multipart form (teloxide with files: `photo=attach://<id>` plus a part named
//! `<id>`), or the query string.
//!
//! Multipart values are text, so every accessor takes a value as JSON or as its
//! text form (`"42"` is a number, `"{…}"` an object).

use std::collections::HashMap;

use axum::{
    body::Bytes,
    extract::{FromRequest, Multipart, Query, Request, multipart::MultipartError},
    http::{StatusCode, header},
};
use serde_json::{Map, Value, json};

use super::{BODY_LIMIT, reply::TgError};

/// A part of a multipart body.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub bytes: Bytes,
    pub file_name: Option<String>,
}

/// Where a file parameter points.
pub(crate) enum FileRef {
    /// Uploaded in this request.
    Upload(Part),
    /// A file Telegram (the fake) already has.
    FileId(String),
    /// For Telegram to fetch (the fake does not).
    Url(String),
}

/// The parameters of one call.
#[derive(Debug, Default)]
pub(crate) struct Params {
    fields: Map<String, Value>,
    parts: HashMap<String, Part>,
}

impl Params {
    /// Reads the query string and the body: multipart, or else JSON (an empty body
    /// is no parameters; URL-encoded forms are not supported).
    pub(crate) async fn read(req: Request) -> Result<Self, TgError> {
        let mut params = Self::default();
        if let Ok(Query(query)) = Query::<HashMap<String, String>>::try_from_uri(req.uri()) {
            params
                .fields
                .extend(query.into_iter().map(|(k, v)| (k, Value::String(v))));
        }
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            params.read_multipart(req).await?;
        } else {
            let body = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
                .await
                .map_err(|_| TgError::too_large())?;
            if !body.trim_ascii().is_empty() {
                params.read_json(&body)?;
            }
        }
        Ok(params)
    }

    fn read_json(&mut self, body: &[u8]) -> Result<(), TgError> {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => {
                self.fields.extend(fields);
                Ok(())
            }
            _ => Err(TgError::bad_request("can't parse JSON object")),
        }
    }

    async fn read_multipart(&mut self, req: Request) -> Result<(), TgError> {
        let mut multipart = Multipart::from_request(req, &())
            .await
            .map_err(|e| TgError::bad_request(format!("can't parse multipart body: {e}")))?;
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let bytes = field.bytes().await.map_err(multipart_error)?;
            if file_name.is_none() {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                self.fields.insert(name.clone(), Value::String(text));
            }
            self.parts.insert(name, Part { bytes, file_name });
        }
        Ok(())
    }

    /// The raw value of `name`.
    fn value(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).filter(|v| !v.is_null())
    }

    /// `name` as text (a number or boolean in its text form).
    pub(crate) fn str(&self, name: &str) -> Option<String> {
        match self.value(name)? {
            Value::String(s) => Some(s.clone()),
            v @ (Value::Number(_) | Value::Bool(_)) => Some(v.to_string()),
            _ => None,
        }
    }

    /// `name` as an integer (a JSON number or its text form).
    pub(crate) fn i64(&self, name: &str) -> Option<i64> {
        match self.value(name)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// `name` as a boolean (`true` or `"true"`); false when absent.
    pub(crate) fn flag(&self, name: &str) -> bool {
        match self.value(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    /// `name` as JSON (text is parsed); a 400 when it is text that is not JSON.
    pub(crate) fn json(&self, name: &str) -> Result<Option<Value>, TgError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| TgError::bad_request(format!("can't parse {name} JSON object"))),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// `chat_id`: required, numeric (channel usernames are not supported).
    pub(crate) fn chat_id(&self) -> Result<i64, TgError> {
        match self.str("chat_id") {
            None => Err(TgError::bad_request("chat_id is empty")),
            Some(s) => s
                .trim()
                .parse()
                .map_err(|_| TgError::bad_request("chat not found")),
        }
    }

    /// `message_id`: required.
    pub(crate) fn message_id(&self) -> Result<i32, TgError> {
        self.i64("message_id")
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| TgError::bad_request("message identifier is not specified"))
    }

    /// The file parameter `name`: `attach://<part>`, a part named `name`, a URL or a file id.
    pub(crate) fn file(&self, name: &str) -> Result<Option<FileRef>, TgError> {
        let Some(value) = self.str(name) else {
            return Ok(self.parts.get(name).cloned().map(FileRef::Upload));
        };
        self.file_ref(&value).map(Some)
    }

    /// A file named by `value`: `attach://<part>`, a URL or a file id.
    pub(crate) fn file_ref(&self, value: &str) -> Result<FileRef, TgError> {
        let value = value.to_owned();
        if let Some(part) = value.strip_prefix("attach://") {
            return self
                .parts
                .get(part)
                .cloned()
                .map(FileRef::Upload)
                .ok_or_else(|| TgError::bad_request(format!("file {part} not found")));
        }
        if value.starts_with("http://") || value.starts_with("https://") {
            return Ok(FileRef::Url(value));
        }
        Ok(FileRef::FileId(value))
    }

    /// The parameters as a JSON object, for [`FakeTelegram::requests`]: text that
    /// holds a JSON object or array is parsed; an uploaded part is
    /// `{"file_name": …, "size": …}`.
    ///
    /// [`FakeTelegram::requests`]: super::FakeTelegram::requests
    pub(crate) fn to_record(&self) -> Value {
        let mut record = Map::new();
        for (name, value) in &self.fields {
            let value = match value {
                Value::String(s) if s.starts_with('{') || s.starts_with('[') => {
                    serde_json::from_str(s).unwrap_or_else(|_| value.clone())
                }
                _ => value.clone(),
            };
            record.insert(name.clone(), value);
        }
        for (name, part) in &self.parts {
            if part.file_name.is_some() {
                record.insert(
                    name.clone(),
                    json!({ "file_name": part.file_name, "size": part.bytes.len() }),
                );
            }
        }
        Value::Object(record)
    }
}

/// A broken or oversized multipart body.
fn multipart_error(e: MultipartError) -> TgError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        TgError::too_large()
    } else {
        TgError::bad_request(format!("can't parse multipart body: {}", e.body_text()))
    }
}
