//! The library's errors by kind, for callers that react to the kind (the Python binding
//! raises `ValueError`, `FileNotFoundError`, `OSError` or `RuntimeError` by it): input
//! the caller can fix, and the GPU device failing. Errors travel as `anyhow::Error`
//! with an [`Error`] at their root (I/O errors keep their `std::io::Error`), so context
//! added on the way up keeps the kind; [`kind`] finds it.

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
                Error::InvalidInput(_) => ErrorKind::InvalidInput,
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
}
