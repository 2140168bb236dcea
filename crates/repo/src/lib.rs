//! pgkeep-repo
