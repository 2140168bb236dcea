//! The configuration-file reader (pgBackRest's non-strict ini, `src/common/ini.c`).
//!
//! Contract: lines are trimmed; blank lines and lines starting with `#` are skipped (there are no
//! end-of-line comments); `[name]` opens a section; `key=value` splits at the first `=` and both
//! sides are trimmed. Several files merge into one store as pgBackRest's concatenation does: a
//! section seen again continues, and a key seen again in the same section becomes a list, in the
//! order read. Syntax errors are `FormatError` with pgBackRest's messages and the line number
//! within the file.

use pgkeep_base::{Result, bail};

/// One section: keys in first-seen order, each with its values in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct IniSection {
    pub(crate) keys: Vec<(String, Vec<String>)>,
}

impl IniSection {
    fn add(&mut self, key: &str, value: &str) {
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, values)) => values.push(value.to_string()),
            None => self.keys.push((key.to_string(), vec![value.to_string()])),
        }
    }
}

/// Sections in first-seen order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Ini {
    sections: Vec<(String, IniSection)>,
}

impl Ini {
    /// Add the content of one file.
    pub(crate) fn add_text(&mut self, text: &str) -> Result<()> {
        let mut section: Option<usize> = None;
        for (number, raw) in text.split('\n').enumerate() {
            let line_no = number + 1;
            let line = raw.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(name) = rest.strip_suffix(']') else {
                    bail!(
                        Format,
                        "ini section should end with ] at line {line_no}: {line}"
                    );
                };
                if name.is_empty() {
                    bail!(Format, "invalid empty section at line {line_no}: {line}");
                }
                section = Some(self.section_slot(name));
                continue;
            }
            let Some(slot) = section else {
                bail!(
                    Format,
                    "key/value found outside of section at line {line_no}: {line}"
                );
            };
            let Some((key, value)) = line.split_once('=') else {
                bail!(Format, "missing '=' in key/value at line {line_no}: {line}");
            };
            let key = key.trim_matches(|c: char| c.is_ascii_whitespace());
            let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
            if key.is_empty() {
                bail!(Format, "key is zero-length at line {line_no}: {line}");
            }
            if let Some((_, s)) = self.sections.get_mut(slot) {
                s.add(key, value);
            }
        }
        Ok(())
    }

    fn section_slot(&mut self, name: &str) -> usize {
        if let Some(i) = self.sections.iter().position(|(n, _)| n == name) {
            return i;
        }
        self.sections
            .push((name.to_string(), IniSection::default()));
        self.sections.len() - 1
    }

    /// The section named `name`, if present.
    pub(crate) fn section(&self, name: &str) -> Option<&IniSection> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// Section names in first-seen order.
    #[cfg(test)]
    pub(crate) fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ini: &Ini, section: &str) -> Vec<(String, Vec<String>)> {
        ini.section(section)
            .map(|s| s.keys.clone())
            .unwrap_or_default()
    }

    #[test]
    fn reads_sections_keys_comments_and_trims() {
        let mut ini = Ini::default();
        ini.add_text(
            "# comment\n\n[global]\n  log-path = /var/log/x  \nstart-fast=y\r\n[demo]\npg1-path=/data=x\n   # indented comment\n",
        )
        .unwrap();
        assert_eq!(
            keys(&ini, "global"),
            vec![
                ("log-path".to_string(), vec!["/var/log/x".to_string()]),
                ("start-fast".to_string(), vec!["y".to_string()]),
            ]
        );
        assert_eq!(
            keys(&ini, "demo"),
            vec![("pg1-path".to_string(), vec!["/data=x".to_string()])]
        );
        assert_eq!(ini.section_names().collect::<Vec<_>>(), ["global", "demo"]);
    }

    #[test]
    fn repeated_keys_and_sections_merge_across_files() {
        let mut ini = Ini::default();
        ini.add_text("[global]\nexclude=a\n[demo]\nx=1\n").unwrap();
        ini.add_text("[global]\nexclude=b\nlog-path=/l\n").unwrap();
        assert_eq!(
            keys(&ini, "global"),
            vec![
                (
                    "exclude".to_string(),
                    vec!["a".to_string(), "b".to_string()]
                ),
                ("log-path".to_string(), vec!["/l".to_string()]),
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let cases = [
            (
                "[global\n",
                "ini section should end with ] at line 1: [global",
            ),
            ("\n[]\n", "invalid empty section at line 2: []"),
            ("a=b\n", "key/value found outside of section at line 1: a=b"),
            (
                "[g]\nnoequal\n",
                "missing '=' in key/value at line 2: noequal",
            ),
            ("[g]\n=value\n", "key is zero-length at line 2: =value"),
        ];
        for (text, message) in cases {
            let err = Ini::default().add_text(text).unwrap_err();
            assert_eq!(err.kind(), pgkeep_base::ErrorKind::Format, "{text:?}");
            assert_eq!(err.message(), message);
        }
    }

    #[test]
    fn a_file_starting_without_section_is_an_error_even_after_another_file() {
        let mut ini = Ini::default();
        ini.add_text("[global]\na=1\n").unwrap();
        assert!(ini.add_text("b=2\n").is_err());
    }
}
