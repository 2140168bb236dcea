//! Posix driver (to be implemented).
