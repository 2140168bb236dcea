//! pgkeep-config
