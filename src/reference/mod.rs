//! CPU reference (oracle).
