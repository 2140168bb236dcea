//! `info`: stanza, backup and archive status, as text or JSON.

pub mod render;

use pgkeep_base::Result;

use crate::ctx::Ctx;

/// `info` (gathering lands with the renderer).
///
/// # Errors
/// Not yet implemented.
pub fn run(_ctx: &Ctx) -> Result<()> {
    Err(pgkeep_base::Error::new(pgkeep_base::ErrorKind::FeatureNotSupported, "info is not wired yet"))
}
