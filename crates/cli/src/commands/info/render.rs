//! Rendering of info output (being written).
