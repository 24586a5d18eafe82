//! Files: the store (uploads by the bot, photos and voice messages from users),
//! `getFile`, downloads at `GET /file/bot<token>/<path>`, and the checks Telegram
//! makes of a photo.

use std::{io::Cursor, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::header,
    response::{IntoResponse, Response},
};
use image::{ImageFormat, ImageReader};
use serde_json::{Value, json};

use super::{
    DOWNLOAD_LIMIT, PHOTO_UPLOAD_LIMIT, Shared, State as FakeState, objects::FileMeta,
    params::Params, reply::TgError,
};

/// A file the fake holds.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub meta: FileMeta,
    pub bytes: Bytes,
    /// `file_path` of `getFile`, e.g. `photos/file_3.jpg`.
    pub path: String,
}

impl FakeState {
    /// Stores `bytes` under a new file id; `folder` and `ext` make its path.
    pub(crate) fn store_file(&mut self, folder: &str, ext: &str, bytes: Bytes) -> FileMeta {
        self.next_file += 1;
        let n = self.next_file;
        let meta = FileMeta {
            file_id: format!("fake-file-{n}"),
            unique_id: format!("fake-unique-{n}"),
            size: bytes.len(),
        };
        let path = format!("{folder}/file_{n}.{ext}");
        self.file_paths.insert(path.clone(), meta.file_id.clone());
        self.files.insert(
            meta.file_id.clone(),
            StoredFile {
                meta: meta.clone(),
                bytes,
                path,
            },
        );
        meta
    }
}

/// `getFile`: the file's `file_path`, for a file of at most 20 MB.
pub(crate) fn get_file(shared: &Shared, params: &Params) -> Result<Value, TgError> {
    let file_id = params
        .str("file_id")
        .ok_or_else(|| TgError::bad_request("file_id is empty"))?;
    let state = shared.state();
    let file = state
        .files
        .get(&file_id)
        .ok_or_else(|| TgError::bad_request("invalid file id"))?;
    if file.meta.size > DOWNLOAD_LIMIT {
        return Err(TgError::bad_request("file is too big"));
    }
    Ok(file.meta.object(json!({ "file_path": file.path })))
}

/// `GET /file/bot<token>/<path>`: the file's bytes (counted as calls of `download`).
pub(crate) async fn download(
    State(shared): State<Arc<Shared>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    shared.count_call("download");
    if bot != shared.bot_segment {
        return TgError::unauthorized().into_response();
    }
    let state = shared.state();
    let file = state
        .file_paths
        .get(&path)
        .and_then(|id| state.files.get(id));
    match file {
        Some(file) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            file.bytes.clone(),
        )
            .into_response(),
        None => TgError::not_found("Not Found").into_response(),
    }
}

/// Checks an uploaded photo as Telegram does; its width and height.
pub(crate) fn check_photo(bytes: &[u8]) -> Result<(u32, u32), TgError> {
    if bytes.len() > PHOTO_UPLOAD_LIMIT {
        return Err(TgError::bad_request("PHOTO_SAVE_FILE_INVALID"));
    }
    let (width, height) =
        dimensions(bytes).ok_or_else(|| TgError::bad_request("IMAGE_PROCESS_FAILED"))?;
    let (long, short) = (width.max(height), width.min(height));
    if u64::from(width) + u64::from(height) > 10_000 || u64::from(long) > 20 * u64::from(short) {
        return Err(TgError::bad_request("PHOTO_INVALID_DIMENSIONS"));
    }
    Ok((width, height))
}

/// An image's width and height, from its header (PNG, JPEG or WebP).
fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()
}

/// A JPEG of at most `max_side` × `max_side` made from the image in `bytes`, with
/// its width and height; `None` if `bytes` is not an image.
pub(crate) fn thumbnail(bytes: &[u8], max_side: u32) -> Option<(Bytes, u32, u32)> {
    let image = image::load_from_memory(bytes).ok()?;
    let thumb = image::DynamicImage::ImageRgb8(image.thumbnail(max_side, max_side).to_rgb8());
    let mut jpeg = Cursor::new(Vec::new());
    thumb.write_to(&mut jpeg, ImageFormat::Jpeg).ok()?;
    Some((
        Bytes::from(jpeg.into_inner()),
        thumb.width(),
        thumb.height(),
    ))
}
