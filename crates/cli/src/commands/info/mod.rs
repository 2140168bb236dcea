//! `info`: stanza, backup and archive status, as text or JSON.

pub mod render;
