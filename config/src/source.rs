//! The configuration's source files: their text, and byte offsets turned into line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Index of a file in [`Sources`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub(crate) u32);

/// One configuration file as it was read.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as given (or found in the config directory); used in messages.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    /// Byte offset of the start of every line, for offset → line/column.
    line_starts: Vec<usize>,
}

impl SourceFile {
    fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            path,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }

    /// The directory relative paths in this file are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }

    /// A path written in this file: absolute as written, else relative to [`Self::dir`].
    pub fn resolve(&self, written: &str) -> PathBuf {
        // An absolute path replaces the directory it is joined to.
        self.dir().join(written)
    }
}

/// Every file of one configuration, in load order (sorted by path in a directory).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// An empty set; add files with [`Sources::add`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file's text and returns its id.
    pub fn add(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> FileId {
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(SourceFile::new(path.into(), text.into()));
        id
    }

    /// The file behind an id.
    ///
    /// # Panics
    /// If the id came from another `Sources` (ids are only made by [`Sources::add`]).
    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// All files with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    /// The location of a span in a file.
    pub fn locate(&self, file: FileId, span: Range<usize>) -> Location {
        let f = self.file(file);
        let (line, column) = f.line_col(span.start);
        Location {
            path: f.path.clone(),
            line,
            column,
        }
    }

    /// SHA-256 over every file's path and text: the configuration's content hash.
    pub fn content_hash(&self) -> ContentHash {
        let mut h = Sha256::new();
        for f in &self.files {
            h.update(f.path.to_string_lossy().as_bytes());
            h.update([0]);
            h.update((f.text.len() as u64).to_le_bytes());
            h.update(f.text.as_bytes());
        }
        ContentHash(h.finalize().into())
    }
}

/// Where something is in the configuration: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file's path.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// SHA-256 of a configuration's sources.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// This hash extended with more content (blocklist files), so that a change there is a
    /// changed configuration too.
    pub fn with<T: AsRef<[u8]>>(self, extra: &[T]) -> Self {
        if extra.is_empty() {
            return self;
        }
        let mut h = Sha256::new();
        h.update(self.0);
        for e in extra {
            let e = e.as_ref();
            h.update((e.len() as u64).to_le_bytes());
            h.update(e);
        }
        Self(h.finalize().into())
    }

    /// The first 12 hex digits, enough to tell configurations apart in logs.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let mut s = Sources::new();
        let id = s.add("a.toml", "a = 1\nbé = \"x\"\n");
        assert_eq!(s.locate(id, 0..1).line, 1);
        let loc = s.locate(id, 11..12);
        assert_eq!((loc.line, loc.column), (2, 5));
        assert_eq!(s.locate(id, 999..1000).line, 3);
    }

    #[test]
    fn hash_changes_with_content() {
        let mut a = Sources::new();
        a.add("a.toml", "x = 1");
        let mut b = Sources::new();
        b.add("a.toml", "x = 2");
        assert_ne!(a.content_hash(), b.content_hash());
        assert_eq!(a.content_hash().short().len(), 12);
    }
}
