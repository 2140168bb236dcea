//! pgkeep-pg
