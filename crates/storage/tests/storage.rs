//! Conformance suite: the `Storage` contract every driver must keep.
//!
//! Each check takes any `&dyn Storage` plus a base path inside it to work under, and only relies
//! on what `lib.rs` promises (optional operations are gated on `features()`). `drivers!` runs every
//! check once per driver setup, each in a fresh place; a new driver adds one line there.

// the checks are plain fns called from #[test]s, which clippy's test allowance does not see
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed check"
)]

use std::io::{Read, Write};

use pgkeep_storage::posix::PosixStorage;
use pgkeep_storage::{
    ErrorKind, FileType, InfoLevel, LinkType, ReadOptions, Storage, WriteOptions, get, join, put,
};

/// Path of `name` below the check's base.
fn at(base: &str, name: &str) -> String {
    join(base, name)
}

fn names(storage: &dyn Storage, path: &str) -> Vec<String> {
    let mut names: Vec<String> = storage
        .list(path, InfoLevel::Exists)
        .unwrap()
        .unwrap_or_default()
        .into_iter()
        .map(|info| info.name)
        .collect();
    names.sort();
    names
}

fn read_with(storage: &dyn Storage, path: &str, opts: ReadOptions) -> Vec<u8> {
    let mut data = Vec::new();
    storage
        .open_read(path, opts)
        .unwrap()
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    data
}

fn write_read_round_trip(storage: &dyn Storage, base: &str) {
    let path = at(base, "a/b/c.txt");
    put(storage, &path, b"hello", WriteOptions::default()).unwrap();
    assert_eq!(get(storage, &path).unwrap().unwrap(), b"hello");
    let info = storage
        .info(&path, InfoLevel::Basic, false)
        .unwrap()
        .unwrap();
    assert_eq!(info.name, path);
    assert_eq!(info.file_type, FileType::File);
    assert_eq!(info.size, 5);
}

fn overwrite_replaces_content(storage: &dyn Storage, base: &str) {
    let path = at(base, "f");
    put(storage, &path, b"first, longer", WriteOptions::default()).unwrap();
    put(storage, &path, b"second", WriteOptions::default()).unwrap();
    assert_eq!(get(storage, &path).unwrap().unwrap(), b"second");
    let info = storage
        .info(&path, InfoLevel::Basic, false)
        .unwrap()
        .unwrap();
    assert_eq!(info.size, 6);
    assert_eq!(names(storage, base), ["f"]);
}

fn empty_and_large_files(storage: &dyn Storage, base: &str) {
    let empty = at(base, "empty");
    let writer = storage.open_write(&empty, WriteOptions::default()).unwrap();
    writer.finish().unwrap();
    assert_eq!(get(storage, &empty).unwrap().unwrap(), b"");
    let info = storage
        .info(&empty, InfoLevel::Basic, false)
        .unwrap()
        .unwrap();
    assert_eq!((info.file_type, info.size), (FileType::File, 0));

    let large = at(base, "large");
    let data: Vec<u8> = (0..(3 << 20) + 7).map(|i: u32| (i % 253) as u8).collect();
    let mut writer = storage.open_write(&large, WriteOptions::default()).unwrap();
    for chunk in data.chunks(10_000) {
        writer.write_all(chunk).unwrap();
    }
    writer.finish().unwrap();
    assert_eq!(get(storage, &large).unwrap().unwrap(), data);
}

fn missing_cases(storage: &dyn Storage, base: &str) {
    let path = at(base, "missing");
    assert!(get(storage, &path).unwrap().is_none());
    let err = storage
        .open_read(&path, ReadOptions::default())
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::FileMissing);
    assert!(err.message().starts_with("unable to open missing file '"));
    assert!(err.message().contains(&path), "{}", err.message());
    let ignored = ReadOptions {
        ignore_missing: true,
        ..ReadOptions::default()
    };
    assert!(storage.open_read(&path, ignored).unwrap().is_none());
    assert!(
        storage
            .info(&path, InfoLevel::Detail, false)
            .unwrap()
            .is_none()
    );
    assert!(
        storage
            .info(&path, InfoLevel::Exists, true)
            .unwrap()
            .is_none()
    );
    assert!(storage.list(&path, InfoLevel::Basic).unwrap().is_none());
    storage.remove(&path, true).unwrap();
    let err = storage.remove(&path, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FileRemove);
    assert!(err.message().contains(&path), "{}", err.message());
    storage.remove_path(&path, true).unwrap();
    storage.remove_path(&path, false).unwrap();
}

fn read_offset_and_limit(storage: &dyn Storage, base: &str) {
    let path = at(base, "digits");
    put(storage, &path, b"0123456789", WriteOptions::default()).unwrap();
    let read = |offset, limit| {
        read_with(
            storage,
            &path,
            ReadOptions {
                offset,
                limit,
                ignore_missing: false,
                sequential: false,
            },
        )
    };
    assert_eq!(read(0, None), b"0123456789");
    assert_eq!(read(3, None), b"3456789");
    assert_eq!(read(0, Some(4)), b"0123");
    assert_eq!(read(2, Some(3)), b"234");
    assert_eq!(read(8, Some(10)), b"89");
    assert_eq!(read(20, None), b"");
    assert_eq!(read(0, Some(0)), b"");
}

fn list_reports_entries(storage: &dyn Storage, base: &str) {
    put(storage, &at(base, "d/f1"), b"abc", WriteOptions::default()).unwrap();
    put(
        storage,
        &at(base, "d/sub/f2"),
        b"x",
        WriteOptions::default(),
    )
    .unwrap();
    for level in [InfoLevel::Exists, InfoLevel::Basic, InfoLevel::Detail] {
        let mut list = storage.list(&at(base, "d"), level).unwrap().unwrap();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        let got: Vec<(&str, FileType)> = list
            .iter()
            .map(|i| (i.name.as_str(), i.file_type))
            .collect();
        assert_eq!(got, [("f1", FileType::File), ("sub", FileType::Path)]);
        if level >= InfoLevel::Basic {
            assert_eq!(list[0].size, 3);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            assert!(
                (list[0].mtime - now).abs() < 3600,
                "mtime {}",
                list[0].mtime
            );
        }
        if level == InfoLevel::Detail && storage.features().info_detail {
            assert_ne!(list[0].mode, 0);
        }
    }
    assert_eq!(names(storage, &at(base, "d/sub")), ["f2"]);
}

fn info_levels(storage: &dyn Storage, base: &str) {
    let path = at(base, "i");
    let opts = WriteOptions {
        mtime: Some(1_700_000_000),
        ..WriteOptions::default()
    };
    put(storage, &path, b"12", opts).unwrap();
    let exists = storage
        .info(&path, InfoLevel::Exists, false)
        .unwrap()
        .unwrap();
    assert_eq!(exists.file_type, FileType::File);
    let basic = storage
        .info(&path, InfoLevel::Basic, false)
        .unwrap()
        .unwrap();
    assert_eq!((basic.size, basic.mtime), (2, 1_700_000_000));
    if storage.features().info_detail {
        let detail = storage
            .info(&path, InfoLevel::Detail, false)
            .unwrap()
            .unwrap();
        assert_eq!(detail.mode, 0o640);
        assert!(detail.link_destination.is_none());
    }
}

fn atomic_write_invisible_until_finish(storage: &dyn Storage, base: &str) {
    let old = at(base, "w/old");
    put(storage, &old, b"old", WriteOptions::default()).unwrap();
    let mut writer = storage.open_write(&old, WriteOptions::default()).unwrap();
    writer.write_all(b"new content").unwrap();
    writer.flush().unwrap();
    assert_eq!(get(storage, &old).unwrap().unwrap(), b"old");
    let info = storage
        .info(&old, InfoLevel::Basic, false)
        .unwrap()
        .unwrap();
    assert_eq!(info.size, 3);
    writer.finish().unwrap();
    assert_eq!(get(storage, &old).unwrap().unwrap(), b"new content");

    let new = at(base, "w/new");
    let mut writer = storage.open_write(&new, WriteOptions::default()).unwrap();
    writer.write_all(b"data").unwrap();
    writer.flush().unwrap();
    assert!(
        storage
            .info(&new, InfoLevel::Exists, false)
            .unwrap()
            .is_none()
    );
    assert!(get(storage, &new).unwrap().is_none());
    writer.finish().unwrap();
    assert_eq!(get(storage, &new).unwrap().unwrap(), b"data");
    assert_eq!(names(storage, &at(base, "w")), ["new", "old"]);
}

fn dropped_writer_leaves_nothing(storage: &dyn Storage, base: &str) {
    let keep = at(base, "z/keep");
    put(storage, &keep, b"kept", WriteOptions::default()).unwrap();
    let mut writer = storage.open_write(&keep, WriteOptions::default()).unwrap();
    writer.write_all(b"discarded").unwrap();
    drop(writer);
    assert_eq!(get(storage, &keep).unwrap().unwrap(), b"kept");

    let new = at(base, "z/new");
    let mut writer = storage.open_write(&new, WriteOptions::default()).unwrap();
    writer.write_all(&vec![5u8; 200_000]).unwrap();
    writer.flush().unwrap();
    drop(writer);
    assert!(
        storage
            .info(&new, InfoLevel::Exists, false)
            .unwrap()
            .is_none()
    );
    assert_eq!(names(storage, &at(base, "z")), ["keep"]);

    // non-atomic: discarded as well
    let opts = WriteOptions {
        atomic: false,
        ..WriteOptions::default()
    };
    let mut writer = storage.open_write(&new, opts).unwrap();
    writer.write_all(b"partial").unwrap();
    drop(writer);
    assert_eq!(names(storage, &at(base, "z")), ["keep"]);
}

fn write_option_variants(storage: &dyn Storage, base: &str) {
    let variants = [
        WriteOptions {
            atomic: false,
            ..WriteOptions::default()
        },
        WriteOptions {
            sync_file: false,
            sync_path: false,
            ..WriteOptions::default()
        },
        WriteOptions {
            atomic: false,
            sync_file: false,
            sync_path: false,
            ..WriteOptions::default()
        },
    ];
    for (i, opts) in variants.into_iter().enumerate() {
        let path = at(base, &format!("v/{i}"));
        put(storage, &path, b"variant", opts).unwrap();
        assert_eq!(get(storage, &path).unwrap().unwrap(), b"variant");
    }
    assert_eq!(names(storage, &at(base, "v")), ["0", "1", "2"]);
}

fn remove_file_and_paths(storage: &dyn Storage, base: &str) {
    put(storage, &at(base, "r/a/b/f"), b"x", WriteOptions::default()).unwrap();
    put(storage, &at(base, "r/g"), b"x", WriteOptions::default()).unwrap();
    storage.remove(&at(base, "r/g"), false).unwrap();
    assert!(get(storage, &at(base, "r/g")).unwrap().is_none());
    if storage.features().path {
        let err = storage.remove_path(&at(base, "r"), false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathRemove);
    }
    storage.remove_path(&at(base, "r"), true).unwrap();
    assert!(
        storage
            .list(&at(base, "r"), InfoLevel::Exists)
            .unwrap()
            .is_none()
    );
    assert!(get(storage, &at(base, "r/a/b/f")).unwrap().is_none());
}

fn leading_slash_is_tolerated(storage: &dyn Storage, base: &str) {
    let path = at(base, "s/f");
    let slashed = if path.starts_with('/') {
        path.clone()
    } else {
        format!("/{path}")
    };
    put(storage, &slashed, b"slash", WriteOptions::default()).unwrap();
    assert_eq!(get(storage, &path).unwrap().unwrap(), b"slash");
    let unslashed = path.trim_start_matches('/');
    assert_eq!(get(storage, unslashed).unwrap().unwrap(), b"slash");
}

fn path_operations(storage: &dyn Storage, base: &str) {
    if !storage.features().path {
        let err = storage.path_create(&at(base, "pc"), None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FeatureNotSupported);
        return;
    }
    storage.path_create(&at(base, "pc/x/y"), None).unwrap();
    storage.path_create(&at(base, "pc/x/y"), None).unwrap();
    let list = storage
        .list(&at(base, "pc/x"), InfoLevel::Basic)
        .unwrap()
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0].name.as_str(), list[0].file_type),
        ("y", FileType::Path)
    );
    assert_eq!(
        storage.list(&at(base, "pc/x/y"), InfoLevel::Basic).unwrap(),
        Some(vec![])
    );
    if storage.features().path_sync {
        storage.path_sync(&at(base, "pc/x")).unwrap();
        let err = storage.path_sync(&at(base, "pc/nope")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PathMissing);
    }
    storage.remove_path(&at(base, "pc/x/y"), false).unwrap();
    assert_eq!(names(storage, &at(base, "pc/x")), Vec::<String>::new());
}

fn links(storage: &dyn Storage, base: &str) {
    let target = at(base, "l/t");
    put(storage, &target, b"linked", WriteOptions::default()).unwrap();
    if storage.features().symlink {
        let soft = at(base, "l/soft");
        storage.link_create("t", &soft, LinkType::Soft).unwrap();
        let info = storage
            .info(&soft, InfoLevel::Detail, false)
            .unwrap()
            .unwrap();
        assert_eq!(info.file_type, FileType::Link);
        assert_eq!(info.link_destination.as_deref(), Some("t"));
        let followed = storage
            .info(&soft, InfoLevel::Basic, true)
            .unwrap()
            .unwrap();
        assert_eq!((followed.file_type, followed.size), (FileType::File, 6));
        assert_eq!(get(storage, &soft).unwrap().unwrap(), b"linked");
        storage.remove(&soft, false).unwrap();
        assert_eq!(get(storage, &target).unwrap().unwrap(), b"linked");
    } else {
        let err = storage
            .link_create("t", &at(base, "l/soft"), LinkType::Soft)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FeatureNotSupported);
    }
    if storage.features().hardlink {
        let hard = at(base, "l/hard");
        storage.link_create(&target, &hard, LinkType::Hard).unwrap();
        let info = storage
            .info(&hard, InfoLevel::Basic, false)
            .unwrap()
            .unwrap();
        assert_eq!((info.file_type, info.size), (FileType::File, 6));
        storage.remove(&target, false).unwrap();
        assert_eq!(get(storage, &hard).unwrap().unwrap(), b"linked");
    }
}

fn move_file(storage: &dyn Storage, base: &str) {
    let from = at(base, "m/a");
    let to = at(base, "m/sub/b");
    put(storage, &from, b"moved", WriteOptions::default()).unwrap();
    put(storage, &to, b"replaced", WriteOptions::default()).unwrap();
    storage.move_file(&from, &to).unwrap();
    assert!(get(storage, &from).unwrap().is_none());
    assert_eq!(get(storage, &to).unwrap().unwrap(), b"moved");
    // into a directory that does not exist yet
    let deeper = at(base, "m/new/deeper/c");
    storage.move_file(&to, &deeper).unwrap();
    assert_eq!(get(storage, &deeper).unwrap().unwrap(), b"moved");
    let err = storage.move_file(&from, &to).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FileMissing);
    assert!(err.message().contains(&from), "{}", err.message());
}

/// One `#[test]` per check and driver; `$setup` returns (guard kept alive, storage, base path).
macro_rules! drivers {
    ($($driver:ident => $setup:expr;)*) => {$(
        mod $driver {
            use super::*;

            fn run(check: fn(&dyn Storage, &str)) {
                let (_guard, storage, base) = $setup;
                check(&storage, &base);
            }

            #[test] fn write_read_round_trip() { run(super::write_read_round_trip) }
            #[test] fn overwrite_replaces_content() { run(super::overwrite_replaces_content) }
            #[test] fn empty_and_large_files() { run(super::empty_and_large_files) }
            #[test] fn missing_cases() { run(super::missing_cases) }
            #[test] fn read_offset_and_limit() { run(super::read_offset_and_limit) }
            #[test] fn list_reports_entries() { run(super::list_reports_entries) }
            #[test] fn info_levels() { run(super::info_levels) }
            #[test] fn atomic_write_invisible_until_finish() { run(super::atomic_write_invisible_until_finish) }
            #[test] fn dropped_writer_leaves_nothing() { run(super::dropped_writer_leaves_nothing) }
            #[test] fn write_option_variants() { run(super::write_option_variants) }
            #[test] fn remove_file_and_paths() { run(super::remove_file_and_paths) }
            #[test] fn leading_slash_is_tolerated() { run(super::leading_slash_is_tolerated) }
            #[test] fn path_operations() { run(super::path_operations) }
            #[test] fn links() { run(super::links) }
            #[test] fn move_file() { run(super::move_file) }
        }
    )*};
}

drivers! {
    // the repository shape: storage rooted at the repo directory, relative paths
    posix_rooted => {
        let dir = tempfile::tempdir().unwrap();
        let storage = PosixStorage::new(dir.path().to_str().unwrap());
        (dir, storage, String::new())
    };
    // the PostgreSQL host shape: storage rooted at `/`, absolute-looking paths
    posix_at_slash => {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_str().unwrap().to_string();
        (dir, PosixStorage::new("/"), base)
    };
}
