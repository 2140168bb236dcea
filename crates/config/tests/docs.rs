//! `docs/options.md` is generated from the option table; this test fails when it is stale.

#[test]
fn options_page_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/options.md");
    let generated = pgkeep_config::help::reference_markdown();
    if std::env::var_os("PGKEEP_WRITE_DOCS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/options.md is stale: run PGKEEP_WRITE_DOCS=1 cargo test -p pgkeep-config --test docs"
    );
    assert!(
        generated.contains("| `repoN-path` | path | /var/lib/pgbackrest |"),
        "{generated}"
    );
}
