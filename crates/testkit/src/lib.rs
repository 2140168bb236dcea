//! pgkeep-testkit
