//! JSON formatting of assembled stanzas with pgBackRest's writer rules: one compact line, object
//! keys sorted bytewise, keys written raw, string values escaping only `" \ \n \r \t \b \f` (every
//! other byte, control or not, is copied), absent values as `null`, no trailing newline.

use super::{BackupView, StanzaView, status};

/// A JSON value as pgBackRest's variant tree holds it.
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

fn obj(entries: Vec<(&str, Json)>) -> Json {
    Json::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn str_or_null(value: Option<&str>) -> Json {
    value.map_or(Json::Null, |v| Json::Str(v.to_string()))
}

fn str_list(values: &[String]) -> Json {
    Json::Array(values.iter().map(|v| Json::Str(v.clone())).collect())
}

fn write(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(n) => out.push_str(&n.to_string()),
        Json::UInt(n) => out.push_str(&n.to_string()),
        Json::Str(s) => write_str(out, s),
        Json::Array(items) => {
            out.push('[');
            for (idx, item) in items.iter().enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                write(out, item);
            }
            out.push(']');
        }
        Json::Object(entries) => {
            let mut sorted: Vec<&(String, Json)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (idx, (key, item)) in sorted.into_iter().enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(key);
                out.push_str("\":");
                write(out, item);
            }
            out.push('}');
        }
    }
}

fn write_str(out: &mut String, value: &str) {
    out.push('"');
    for ch in value.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            other => out.push(other),
        }
    }
    out.push('"');
}

pub(super) fn render(stanzas: &[StanzaView<'_>]) -> String {
    let list = Json::Array(stanzas.iter().map(stanza).collect());
    let mut out = String::new();
    write(&mut out, &list);
    out
}

fn stanza(view: &StanzaView<'_>) -> Json {
    let repos = view
        .repos
        .iter()
        .map(|repo| {
            obj(vec![
                ("key", Json::UInt(u64::from(repo.key))),
                ("cipher", Json::Str(repo.cipher.as_str().to_string())),
                (
                    "status",
                    obj(vec![
                        ("code", Json::Int(i64::from(repo.status))),
                        ("message", Json::Str(repo.message.clone())),
                    ]),
                ),
            ])
        })
        .collect();
    let db = view
        .db
        .iter()
        .map(|db| {
            obj(vec![
                ("id", Json::UInt(u64::from(db.id))),
                ("system-id", Json::UInt(db.system_id)),
                ("version", Json::Str(db.version.to_string())),
                ("repo-key", Json::UInt(u64::from(db.repo_key))),
            ])
        })
        .collect();
    let archive = view
        .archive
        .iter()
        .map(|archive| {
            obj(vec![
                (
                    "database",
                    obj(vec![
                        ("id", Json::UInt(u64::from(archive.db_id))),
                        ("repo-key", Json::UInt(u64::from(archive.repo_key))),
                    ]),
                ),
                ("id", Json::Str(archive.archive_id.to_string())),
                ("min", str_or_null(archive.min)),
                ("max", str_or_null(archive.max)),
            ])
        })
        .collect();
    let cipher = view.cipher.map_or("mixed", |c| c.as_str());

    obj(vec![
        ("name", Json::Str(view.name.to_string())),
        ("db", Json::Array(db)),
        ("archive", Json::Array(archive)),
        ("repo", Json::Array(repos)),
        (
            "backup",
            Json::Array(view.backups.iter().map(backup).collect()),
        ),
        (
            "status",
            obj(vec![
                ("code", Json::Int(i64::from(view.status))),
                (
                    "message",
                    Json::Str(status::message(view.status).to_string()),
                ),
                (
                    "lock",
                    obj(vec![(
                        "backup",
                        obj(vec![("held", Json::Bool(view.lock.held))]),
                    )]),
                ),
            ]),
        ),
        ("cipher", Json::Str(cipher.to_string())),
    ])
}

/// pgBackRest casts `time_t` to an unsigned 64-bit number (two's complement for negatives).
#[allow(clippy::cast_sign_loss)]
fn time_as_unsigned(secs: i64) -> u64 {
    secs as u64
}

fn backup(view: &BackupView<'_>) -> Json {
    let data = view.data;
    let mut repository = vec![("delta", Json::UInt(data.repo_size_delta))];
    match data.repo_size_map {
        Some(map) => {
            repository.push(("size-map", Json::UInt(map.size)));
            repository.push(("delta-map", Json::UInt(map.delta)));
        }
        None => repository.push(("size", Json::UInt(data.repo_size))),
    }

    let mut entries = vec![
        ("label", Json::Str(data.label.clone())),
        ("type", Json::Str(data.backup_type.clone())),
        ("prior", str_or_null(data.prior.as_deref())),
        (
            "reference",
            data.reference.as_deref().map_or(Json::Null, str_list),
        ),
        (
            "archive",
            obj(vec![
                ("start", str_or_null(data.archive_start.as_deref())),
                ("stop", str_or_null(data.archive_stop.as_deref())),
            ]),
        ),
        (
            "backrest",
            obj(vec![
                ("format", Json::UInt(u64::from(data.backrest_format))),
                ("version", Json::Str(data.backrest_version.clone())),
            ]),
        ),
        (
            "database",
            obj(vec![
                ("id", Json::UInt(u64::from(data.db_id))),
                ("repo-key", Json::UInt(u64::from(view.repo_key))),
            ]),
        ),
        (
            "info",
            obj(vec![
                ("size", Json::UInt(data.size)),
                ("delta", Json::UInt(data.size_delta)),
                ("repository", obj(repository)),
            ]),
        ),
        (
            "timestamp",
            obj(vec![
                ("start", Json::UInt(time_as_unsigned(data.timestamp_start))),
                ("stop", Json::UInt(time_as_unsigned(data.timestamp_stop))),
            ]),
        ),
    ];
    if let Some(error) = view.error {
        entries.push(("error", Json::Bool(error)));
    }
    if let (Some(start), Some(stop)) = (&data.lsn_start, &data.lsn_stop) {
        entries.push((
            "lsn",
            obj(vec![
                ("start", Json::Str(start.clone())),
                ("stop", Json::Str(stop.clone())),
            ]),
        ));
    }
    if let Some(annotation) = &data.annotation {
        entries.push((
            "annotation",
            Json::Object(
                annotation
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::Str(v.clone())))
                    .collect(),
            ),
        ));
    }
    if let Some(set) = &view.set {
        let databases = set
            .databases
            .iter()
            .map(|db| {
                obj(vec![
                    ("name", Json::Str(db.name.clone())),
                    ("oid", Json::UInt(db.oid)),
                ])
            })
            .collect();
        entries.push(("database-ref", Json::Array(databases)));

        let links = if set.links.is_empty() {
            Json::Null
        } else {
            Json::Array(
                set.links
                    .iter()
                    .map(|(name, dest)| {
                        obj(vec![
                            ("name", Json::Str(name.clone())),
                            ("destination", Json::Str(dest.clone())),
                        ])
                    })
                    .collect(),
            )
        };
        entries.push(("link", links));

        let tablespaces = if set.tablespaces.is_empty() {
            Json::Null
        } else {
            Json::Array(
                set.tablespaces
                    .iter()
                    .map(|(name, oid, dest)| {
                        obj(vec![
                            ("name", Json::Str((*name).to_string())),
                            ("destination", Json::Str((*dest).to_string())),
                            ("oid", Json::UInt(u64::from(*oid))),
                        ])
                    })
                    .collect(),
            )
        };
        entries.push(("tablespace", tablespaces));

        if !set.errors.is_empty() {
            entries.push((
                "error-list",
                Json::Array(
                    set.errors
                        .iter()
                        .map(|e| Json::Str((*e).to_string()))
                        .collect(),
                ),
            ));
        }
    }
    obj(entries)
}
