//! Artifacts: the files jobs read and write (a user's photo, a generated image or
//! video). Job code sees only [`ArtifactStore`]; [`LocalArtifacts`] keeps them in a
//! directory, and an S3-compatible store can implement the same trait later.
//!
//! An artifact is named by a key like `2026-11-21/01J…Z.png` (day folder, ULID,
//! extension); keys are validated so that a key from a payload can never leave the
//! store's root.

use std::{
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::{FutureExt, future::BoxFuture};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("invalid artifact key '{0}'")]
    InvalidKey(String),
    #[error("no artifact '{0}'")]
    NotFound(String),
    #[error("artifact '{key}' is {bytes} bytes, over the {limit}-byte limit")]
    TooLarge { key: String, bytes: u64, limit: u64 },
    #[error("artifact store I/O on '{path}': {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A stored artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub key: String,
    pub content_type: String,
    pub bytes: u64,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freed {
    pub files: u64,
    pub bytes: u64,
}

/// Where artifacts live. Object-safe: jobs hold an `Arc<dyn ArtifactStore>`.
pub trait ArtifactStore: Send + Sync {
    /// Stores bytes under a new key ending in `.{ext}`.
    fn put(
        &self,
        bytes: Vec<u8>,
        ext: &str,
        content_type: &str,
    ) -> BoxFuture<'_, Result<ArtifactRef, ArtifactError>>;
    /// Reads an artifact, refusing ones over `limit` bytes.
    fn get(&self, key: &str, limit: u64) -> BoxFuture<'_, Result<Vec<u8>, ArtifactError>>;
    /// A local path for tools that need one (ffmpeg); stores without local files
    /// download to a temporary path.
    fn local_path(&self, key: &str) -> BoxFuture<'_, Result<PathBuf, ArtifactError>>;
    /// Stores a file already on local disk (moved in when possible).
    fn put_file(
        &self,
        path: PathBuf,
        ext: &str,
        content_type: &str,
    ) -> BoxFuture<'_, Result<ArtifactRef, ArtifactError>>;
    /// Deletes artifacts older than `age` (scratch files included).
    fn delete_older_than(&self, age: Duration) -> BoxFuture<'_, Result<Freed, ArtifactError>>;
    /// Deletes an artifact; deleting one that is not there is not an error
    /// (idempotent). Answers whether a file was removed.
    fn delete(&self, key: &str) -> BoxFuture<'_, Result<bool, ArtifactError>>;
    /// A fresh local path ending in `.{ext}` for a temporary file (ffmpeg's input or
    /// output), under the store's scratch directory, so the age sweep
    /// ([`ArtifactStore::delete_older_than`]) removes whatever a crash left there.
    /// The caller deletes it when done (or moves it in with `put_file`).
    fn scratch_path(&self, ext: &str) -> BoxFuture<'_, Result<PathBuf, ArtifactError>>;
}

/// The scratch directory's name under a local store's root.
pub const SCRATCH_DIR: &str = "scratch";

/// Artifacts in a local directory.
#[derive(Debug, Clone)]
pub struct LocalArtifacts {
    root: Arc<PathBuf>,
}

fn io(path: &Path, source: std::io::Error) -> ArtifactError {
    ArtifactError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LocalArtifacts {
    /// Uses (and creates) `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        Ok(Self {
            root: Arc::new(root),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of a key, refusing keys that would leave the root.
    fn path_of(&self, key: &str) -> Result<PathBuf, ArtifactError> {
        let rel = Path::new(key);
        let safe = !key.is_empty()
            && key.len() <= 200
            && rel.components().all(|c| matches!(c, Component::Normal(_)))
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
        if !safe {
            return Err(ArtifactError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(rel))
    }

    fn new_key(ext: &str) -> Result<String, ArtifactError> {
        if ext.is_empty() || ext.len() > 8 || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ArtifactError::InvalidKey(format!("*.{ext}")));
        }
        let day = ulid::Ulid::new();
        let date = day.datetime();
        let secs = date
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(format!(
            "d{}/{}.{ext}",
            secs / 86_400,
            day.to_string().to_lowercase()
        ))
    }

    async fn write_new(
        &self,
        ext: &str,
        content_type: &str,
        write: impl AsyncWriteSource,
    ) -> Result<ArtifactRef, ArtifactError> {
        let key = Self::new_key(ext)?;
        let path = self.path_of(&key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io(dir, e))?;
        }
        let tmp = path.with_extension(format!("{ext}.tmp"));
        let bytes = write.write_to(&tmp).await.map_err(|e| io(&tmp, e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io(&path, e))?;
        Ok(ArtifactRef {
            key,
            content_type: content_type.to_owned(),
            bytes,
        })
    }
}

/// Something that can be written to a path, returning its size.
trait AsyncWriteSource {
    async fn write_to(self, path: &Path) -> std::io::Result<u64>;
}

struct Bytes(Vec<u8>);

impl AsyncWriteSource for Bytes {
    async fn write_to(self, path: &Path) -> std::io::Result<u64> {
        let n = self.0.len() as u64;
        tokio::fs::write(path, self.0).await?;
        Ok(n)
    }
}

struct File(PathBuf);

impl AsyncWriteSource for File {
    async fn write_to(self, path: &Path) -> std::io::Result<u64> {
        if tokio::fs::rename(&self.0, path).await.is_err() {
            tokio::fs::copy(&self.0, path).await?;
            tokio::fs::remove_file(&self.0).await?;
        }
        Ok(tokio::fs::metadata(path).await?.len())
    }
}

impl ArtifactStore for LocalArtifacts {
    fn put(
        &self,
        bytes: Vec<u8>,
        ext: &str,
        content_type: &str,
    ) -> BoxFuture<'_, Result<ArtifactRef, ArtifactError>> {
        let (ext, ct) = (ext.to_owned(), content_type.to_owned());
        async move { self.write_new(&ext, &ct, Bytes(bytes)).await }.boxed()
    }

    fn put_file(
        &self,
        path: PathBuf,
        ext: &str,
        content_type: &str,
    ) -> BoxFuture<'_, Result<ArtifactRef, ArtifactError>> {
        let (ext, ct) = (ext.to_owned(), content_type.to_owned());
        async move { self.write_new(&ext, &ct, File(path)).await }.boxed()
    }

    fn get(&self, key: &str, limit: u64) -> BoxFuture<'_, Result<Vec<u8>, ArtifactError>> {
        let key = key.to_owned();
        async move {
            let path = self.path_of(&key)?;
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => ArtifactError::NotFound(key.clone()),
                    _ => io(&path, e),
                })?;
            if meta.len() > limit {
                return Err(ArtifactError::TooLarge {
                    key,
                    bytes: meta.len(),
                    limit,
                });
            }
            tokio::fs::read(&path).await.map_err(|e| io(&path, e))
        }
        .boxed()
    }

    fn local_path(&self, key: &str) -> BoxFuture<'_, Result<PathBuf, ArtifactError>> {
        let key = key.to_owned();
        async move {
            let path = self.path_of(&key)?;
            match tokio::fs::try_exists(&path).await {
                Ok(true) => Ok(path),
                Ok(false) => Err(ArtifactError::NotFound(key)),
                Err(e) => Err(io(&path, e)),
            }
        }
        .boxed()
    }

    fn delete(&self, key: &str) -> BoxFuture<'_, Result<bool, ArtifactError>> {
        let key = key.to_owned();
        async move {
            let path = self.path_of(&key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {
                    tracing::debug!(%key, "artifact deleted");
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(io(&path, e)),
            }
        }
        .boxed()
    }

    fn scratch_path(&self, ext: &str) -> BoxFuture<'_, Result<PathBuf, ArtifactError>> {
        let ext = ext.to_owned();
        async move {
            if ext.is_empty() || ext.len() > 8 || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ArtifactError::InvalidKey(format!("{SCRATCH_DIR}/*.{ext}")));
            }
            let dir = self.root.join(SCRATCH_DIR);
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| io(&dir, e))?;
            let name = ulid::Ulid::new().to_string().to_lowercase();
            Ok(dir.join(format!("{name}.{ext}")))
        }
        .boxed()
    }

    fn delete_older_than(&self, age: Duration) -> BoxFuture<'_, Result<Freed, ArtifactError>> {
        async move {
            let root = self.root.as_ref().clone();
            let cutoff = SystemTime::now()
                .checked_sub(age)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            tokio::task::spawn_blocking(move || sweep(&root, cutoff))
                .await
                .map_err(|e| io(self.root.as_ref(), std::io::Error::other(e)))?
        }
        .boxed()
    }
}

/// Removes files modified before `cutoff` under `dir` (and directories left empty).
/// A file another host removed first is not an error: sweeps may run concurrently.
fn sweep(dir: &Path, cutoff: SystemTime) -> Result<Freed, ArtifactError> {
    let mut freed = Freed::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(freed),
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let sub = sweep(&path, cutoff)?;
            freed.files += sub.files;
            freed.bytes += sub.bytes;
            let _ = std::fs::remove_dir(&path); // only succeeds when empty
        } else if meta.modified().is_ok_and(|m| m < cutoff) && std::fs::remove_file(&path).is_ok() {
            freed.files += 1;
            freed.bytes += meta.len();
        }
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_and_refuse_escaping_keys() {
        let dir = std::env::temp_dir().join(format!("genq-artifacts-{}", ulid::Ulid::new()));
        let store = LocalArtifacts::new(&dir).unwrap();
        let r = store
            .put(b"hello".to_vec(), "txt", "text/plain")
            .await
            .unwrap();
        assert_eq!(r.bytes, 5);
        assert_eq!(store.get(&r.key, 100).await.unwrap(), b"hello");
        assert!(matches!(
            store.get(&r.key, 2).await,
            Err(ArtifactError::TooLarge { .. })
        ));
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a b"] {
            assert!(
                matches!(store.get(bad, 100).await, Err(ArtifactError::InvalidKey(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            store.get("d1/none.png", 100).await,
            Err(ArtifactError::NotFound(_))
        ));
        let freed = store.delete_older_than(Duration::ZERO).await.unwrap();
        assert_eq!(freed, Freed { files: 1, bytes: 5 });
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn delete_is_idempotent_and_scratch_files_are_swept() {
        let dir = std::env::temp_dir().join(format!("genq-artifacts-{}", ulid::Ulid::new()));
        let store = LocalArtifacts::new(&dir).unwrap();
        let r = store.put(b"x".to_vec(), "bin", "x/y").await.unwrap();
        assert!(store.delete(&r.key).await.unwrap());
        assert!(!store.delete(&r.key).await.unwrap());
        assert!(matches!(
            store.delete("../x").await,
            Err(ArtifactError::InvalidKey(_))
        ));
        let scratch = store.scratch_path("wav").await.unwrap();
        assert!(scratch.starts_with(dir.join(SCRATCH_DIR)), "{scratch:?}");
        assert_ne!(scratch, store.scratch_path("wav").await.unwrap());
        assert!(store.scratch_path("../x").await.is_err());
        std::fs::write(&scratch, b"left by a crash").unwrap();
        let freed = store.delete_older_than(Duration::ZERO).await.unwrap();
        assert_eq!(freed.files, 1);
        assert!(!scratch.exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
