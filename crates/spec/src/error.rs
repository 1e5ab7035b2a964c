//! Errors from reading and checking a spec. Every error found in the text
//! carries the text, the byte span and its line and column, so the CLI can
//! show the offending value; the message itself starts with `file:line:column`
//! so it is useful without rendering too. The text is shared (`Arc`) to keep
//! the error small.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};

/// A position in the spec text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text`.
    pub(crate) fn of(text: &str, offset: usize) -> Self {
        let before = &text[..char_boundary(text, offset)];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Self {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// `offset`, moved back to the start of the character it falls in and
/// clamped to the text, so slicing at it cannot panic.
pub(crate) fn char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

impl fmt::Display for Location {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SpecError {
    #[error("cannot read the image spec {}: {source}", path.display())]
    #[diagnostic(
        code(gpubox::spec::read),
        help("check that the file exists and is readable, or pass the path of another spec")
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot make the spec path {} absolute: {source}", path.display())]
    #[diagnostic(
        code(gpubox::spec::locate),
        help("run gpubox from an existing folder, or pass the spec's absolute path")
    )]
    Locate {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}:{location}: invalid {format} syntax: {message}", src.name())]
    #[diagnostic(
        code(gpubox::spec::syntax),
        help("fix the syntax at the marked position")
    )]
    Syntax {
        format: &'static str,
        message: String,
        location: Location,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("{message}")]
        span: SourceSpan,
    },

    #[error("{}:{location}: unknown key `{path}`{}", src.name(), suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    #[diagnostic(code(gpubox::spec::unknown_key))]
    UnknownKey {
        path: String,
        suggestion: Option<String>,
        location: Location,
        #[help]
        help: String,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("not a key gpubox knows here")]
        span: SourceSpan,
    },

    #[error("{}:{location}: missing required key `{path}`", src.name())]
    #[diagnostic(code(gpubox::spec::missing_key))]
    MissingKey {
        path: String,
        location: Location,
        #[help]
        help: String,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("`{path}` must be set in this table")]
        span: SourceSpan,
    },

    #[error("{}:{location}: key `{path}` is given twice", src.name())]
    #[diagnostic(code(gpubox::spec::duplicate_key), help("keep one of the two entries"))]
    DuplicateKey {
        path: String,
        location: Location,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("second `{path}`")]
        span: SourceSpan,
    },

    #[error("{}:{location}: `{path}` must be {expected}, found {found}", src.name())]
    #[diagnostic(code(gpubox::spec::wrong_type))]
    WrongType {
        path: String,
        expected: &'static str,
        found: &'static str,
        location: Location,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("expected {expected}")]
        span: SourceSpan,
    },

    #[error("{}:{location}: invalid `{path}`: {problem}", src.name())]
    #[diagnostic(code(gpubox::spec::invalid_value))]
    InvalidValue {
        path: String,
        problem: String,
        location: Location,
        #[help]
        help: Option<String>,
        #[source_code]
        src: Arc<NamedSource<String>>,
        #[label("{problem}")]
        span: SourceSpan,
    },

    #[error("SOURCE_DATE_EPOCH={value:?} is not a non-negative integer number of seconds")]
    #[diagnostic(
        code(gpubox::spec::source_date_epoch),
        help(
            "set SOURCE_DATE_EPOCH to Unix seconds (e.g. `$(git log -1 --format=%ct)`) or unset it"
        )
    )]
    SourceDateEpoch { value: String },
}
