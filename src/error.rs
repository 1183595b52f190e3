//! The library's errors by kind, for callers that react to the kind (the Python binding
//! raises `ValueError`, `FileNotFoundError`, `OSError` or `RuntimeError` by it): input
//! the caller can fix, and the GPU device failing. Errors travel as `anyhow::Error`
//! with an [`Error`] at their root (I/O errors keep their `std::io::Error`), so context
//! added on the way up keeps the kind; [`kind`] finds it.
//!
//! An error about one option names it through [`Param`], so each caller reads its own
//! spelling: the command line's `--compare-k`, Python's `compare_k` ([`message`]).

/// A typed root cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the caller: a tensor's shape or values, a class, an option, a
    /// weights file that describes no supported model.
    #[error("{0}")]
    InvalidInput(String),
    /// The GPU: no adapter, a device that cannot be opened or lacks a feature asked
    /// for, a submission or readback that failed (a lost device).
    #[error("{0}")]
    Device(String),
    /// An option the caller gave that no run can use; shown as the command line
    /// spells the option, [`message`] spells it for another caller.
    #[error("{} {detail}", param.flag())]
    Option { param: Param, detail: String },
}

/// An option of the library's entry points (the command line's, Python's), for the
/// errors that name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    BatchSize,
    Smooth,
    Noise,
    CompareK,
    Size,
    ExplainLayer,
    Methods,
    Dataset,
    Root,
    Batch,
    Threshold,
    Precision,
    WeightsDtype,
    Adapter,
}

impl Param {
    /// As the command line spells it.
    pub fn flag(self) -> &'static str {
        match self {
            Param::BatchSize => "--batch-size",
            Param::Smooth => "--smooth",
            Param::Noise => "--noise",
            Param::CompareK => "--compare-k",
            Param::Size => "--size",
            Param::ExplainLayer => "--explain-layer",
            Param::Methods => "--methods",
            Param::Dataset => "--dataset",
            Param::Root => "--root",
            Param::Batch => "--batch",
            Param::Threshold => "--threshold",
            Param::Precision => "--precision",
            Param::WeightsDtype => "--weights-dtype",
            Param::Adapter => "--adapter",
        }
    }

    /// As the Python package spells it (a keyword argument).
    pub fn keyword(self) -> &'static str {
        match self {
            Param::BatchSize => "batch_size",
            Param::Smooth => "smooth",
            Param::Noise => "noise",
            Param::CompareK => "compare_k",
            Param::Size => "size",
            Param::ExplainLayer => "explain_layer",
            Param::Methods => "methods",
            Param::Dataset => "dataset",
            Param::Root => "root",
            Param::Batch => "batch",
            Param::Threshold => "threshold",
            Param::Precision => "precision",
            Param::WeightsDtype => "weights_dtype",
            Param::Adapter => "adapter",
        }
    }
}

/// Who reads an error message, for the spelling of the options it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    CommandLine,
    Python,
}

/// `e` with its context, outermost first and joined by `: ` as `{e:#}` writes it,
/// with every option spelled for `caller`.
pub fn message(e: &anyhow::Error, caller: Caller) -> String {
    let parts: Vec<String> = e
        .chain()
        .map(|cause| match (cause.downcast_ref::<Error>(), caller) {
            (Some(Error::Option { param, detail }), Caller::Python) => {
                format!("{} {detail}", param.keyword())
            }
            _ => cause.to_string(),
        })
        .collect();
    parts.join(": ")
}

/// What kind of failure an error is, read off its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidInput,
    Device,
    /// A file that does not exist.
    NotFound,
    /// Any other I/O failure.
    Io,
    Other,
}

/// The kind of `e`: the first typed cause in its chain (outermost first).
pub fn kind(e: &anyhow::Error) -> ErrorKind {
    for cause in e.chain() {
        if let Some(err) = cause.downcast_ref::<Error>() {
            return match err {
                Error::InvalidInput(_) | Error::Option { .. } => ErrorKind::InvalidInput,
                Error::Device(_) => ErrorKind::Device,
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Io,
            };
        }
    }
    ErrorKind::Other
}

/// `Err(Error::InvalidInput(format!(...)))` into an `anyhow::Error`.
pub fn invalid(message: String) -> anyhow::Error {
    Error::InvalidInput(message).into()
}

/// `Err(Error::Device(format!(...)))` into an `anyhow::Error`.
pub fn device(message: String) -> anyhow::Error {
    Error::Device(message).into()
}

/// An [`Error::Option`]: `detail` follows the option's name (`needs at least 1 sample`).
pub fn bad_option(param: Param, detail: String) -> anyhow::Error {
    Error::Option { param, detail }.into()
}

/// `bail!` with an [`Error::Option`] at the root: `bail_option!(Param::Smooth, "...")`.
macro_rules! bail_option {
    ($param:expr, $($arg:tt)*) => {
        return Err($crate::error::bad_option($param, format!($($arg)*)))
    };
}
pub(crate) use bail_option;

/// `bail!` with an [`Error::InvalidInput`] at the root.
macro_rules! bail_invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::invalid(format!($($arg)*)))
    };
}
pub(crate) use bail_invalid;

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_kind_survives_added_context() {
        let e = Err::<(), _>(invalid("target class 7 is out of range".into()))
            .context("explaining cat.png")
            .unwrap_err();
        assert_eq!(kind(&e), ErrorKind::InvalidInput);
        assert_eq!(
            format!("{e:#}"),
            "explaining cat.png: target class 7 is out of range"
        );
        let e = Err::<(), _>(device("GPU readback failed".into()))
            .context("batch 2")
            .unwrap_err();
        assert_eq!(kind(&e), ErrorKind::Device);
        let missing = std::fs::read("/nonexistent/rsp-weights.safetensors")
            .context("reading weights")
            .unwrap_err();
        assert_eq!(kind(&missing), ErrorKind::NotFound);
        assert_eq!(kind(&anyhow::anyhow!("plain")), ErrorKind::Other);
    }

    #[test]
    fn an_option_is_spelled_for_its_reader() {
        let e = Err::<(), _>(bad_option(
            Param::CompareK,
            "must be at least 2, got 1".into(),
        ))
        .context("batch 1")
        .unwrap_err();
        assert_eq!(kind(&e), ErrorKind::InvalidInput);
        assert_eq!(
            format!("{e:#}"),
            "batch 1: --compare-k must be at least 2, got 1"
        );
        assert_eq!(message(&e, Caller::CommandLine), format!("{e:#}"));
        assert_eq!(
            message(&e, Caller::Python),
            "batch 1: compare_k must be at least 2, got 1"
        );
    }
}
