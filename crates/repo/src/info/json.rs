//! The JSON dialect inside pgBackRest info files, manifests and their values.
//!
//! Contract:
//! - [`Json::parse`] accepts what pgBackRest's reader accepts (`src/common/type/json.c`): integers only (a leading `-`
//!   makes an `i64`, otherwise `u64`), no fractions or exponents, whitespace limited to space, TAB, LF and CR, string
//!   escapes `\" \\ \/ \n \r \t \b \f \uXXXX`. Duplicate object keys keep the last value, as pgBackRest's key/value
//!   store does.
//! - [`Json::render`] writes exactly what pgBackRest writes: compact (no spaces), object keys in ascending byte order
//!   (the reader of pgBackRest skips keys that are out of order, so this is required, not cosmetic), integers exact,
//!   strings escaped by [`write_string`].
//! - Object keys sort byte-wise because `String`'s `Ord` compares UTF-8 bytes, which is pgBackRest's `strcmp` order.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A JSON value as used in pgBackRest files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A non-negative integer (written without sign).
    UInt(u64),
    /// A negative integer (only values below zero are kept here; see [`Json::int`]).
    Int(i64),
    /// A string.
    Str(String),
    /// An array (never the top-level value of an INI line; see the codec).
    Array(Vec<Json>),
    /// An object; keys iterate in byte order, which is also the order written.
    Object(BTreeMap<String, Json>),
}

/// Why a JSON text was refused; `at` is the remainder of the text where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What was wrong, pgBackRest wording (`invalid type at: ...`).
    pub message: String,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Json {
    /// A signed integer normalised the way the parser produces it (`UInt` when not negative).
    #[must_use]
    pub fn int(value: i64) -> Json {
        match u64::try_from(value) {
            Ok(v) => Json::UInt(v),
            Err(_) => Json::Int(value),
        }
    }

    /// A string value.
    #[must_use]
    pub fn str(value: impl Into<String>) -> Json {
        Json::Str(value.into())
    }

    /// Parse one complete JSON value; trailing characters other than whitespace are an error.
    ///
    /// # Errors
    /// A [`JsonError`] naming the position, in pgBackRest's words.
    pub fn parse(text: &str) -> Result<Json, JsonError> {
        let mut parser = Parser {
            text,
            pos: 0,
            depth: 0,
        };
        let value = parser.value()?;
        parser.white();
        if parser.pos < text.len() {
            return Err(parser.error("characters after JSON"));
        }
        Ok(value)
    }

    /// Compact rendering, pgBackRest style.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// Append the compact rendering to `out`.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(true) => out.push_str("true"),
            Json::Bool(false) => out.push_str("false"),
            Json::UInt(v) => {
                let _ = write!(out, "{v}");
            }
            Json::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Json::Str(s) => write_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (idx, item) in items.iter().enumerate() {
                    if idx > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(map) => {
                out.push('{');
                for (idx, (key, value)) in map.iter().enumerate() {
                    if idx > 0 {
                        out.push(',');
                    }
                    write_string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// The string, if this is one.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as `u64`, if it is a non-negative integer.
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::UInt(v) => Some(*v),
            _ => None,
        }
    }

    /// The value as `i64`, if it is an integer in range.
    #[must_use]
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::UInt(v) => i64::try_from(*v).ok(),
            Json::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    #[must_use]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The object, if this is one.
    #[must_use]
    pub fn as_object(&self) -> Option<&BTreeMap<String, Json>> {
        match self {
            Json::Object(map) => Some(map),
            _ => None,
        }
    }

    /// pgBackRest's name of the value's type, for messages.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "bool",
            Json::UInt(_) | Json::Int(_) => "number",
            Json::Str(_) => "str",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }
}

/// Append `s` as a JSON string with pgBackRest's escaping: only `"`, `\`, LF, CR, TAB, BS and FF are escaped; `/`,
/// other control characters and non-ASCII are written raw (the checksum depends on this).
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (idx, ch) in s.char_indices() {
        let esc = match ch {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            _ => continue,
        };
        out.push_str(&s[start..idx]);
        out.push_str(esc);
        start = idx + ch.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `s` rendered as a JSON string (see [`write_string`]).
#[must_use]
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    write_string(&mut out, s);
    out
}

/// Nesting limit: pgBackRest files nest two levels deep; this only guards the stack against hostile input.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn error(&self, what: &str) -> JsonError {
        JsonError {
            message: format!("{what} at: {}", self.rest()),
        }
    }

    fn white(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Json, JsonError> {
        self.white();
        match self.peek() {
            None => Err(JsonError {
                message: "expected data".to_string(),
            }),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Json::Bool(true), "expected boolean"),
            Some(b'f') => self.literal("false", Json::Bool(false), "expected boolean"),
            Some(b'n') => self.literal("null", Json::Null, "expected null"),
            Some(b'[') => self.array(),
            Some(b'{') => self.object(),
            Some(_) => Err(self.error("invalid type")),
        }
    }

    fn literal(&mut self, word: &str, value: Json, what: &str) -> Result<Json, JsonError> {
        if self.rest().starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error(what))
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        if self.pos == digits_start {
            self.pos = start;
            return Err(self.error("no digits found"));
        }
        let text = self.text.get(start..self.pos).unwrap_or("");
        let parsed = if negative {
            text.parse::<i64>().ok().map(Json::int)
        } else {
            text.parse::<u64>().ok().map(Json::UInt)
        };
        parsed.ok_or_else(|| {
            self.pos = start;
            self.error("invalid number")
        })
    }

    fn string(&mut self) -> Result<String, JsonError> {
        // caller guarantees the opening quote
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = self.rest();
            let Some(stop) = rest.find(['"', '\\']) else {
                return Err(JsonError {
                    message: "expected '\"' but found null delimiter".to_string(),
                });
            };
            out.push_str(rest.get(..stop).unwrap_or(""));
            self.pos += stop;
            if self.peek() == Some(b'"') {
                self.pos += 1;
                return Ok(out);
            }
            // backslash
            self.pos += 1;
            let ch = match self.peek() {
                Some(b'"') => '"',
                Some(b'\\') => '\\',
                Some(b'/') => '/',
                Some(b'n') => '\n',
                Some(b'r') => '\r',
                Some(b't') => '\t',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'u') => {
                    self.pos += 1;
                    let ch = self.unicode()?;
                    out.push(ch);
                    continue;
                }
                _ => {
                    self.pos -= 1;
                    return Err(self.error("invalid escape character"));
                }
            };
            self.pos += 1;
            out.push(ch);
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self.text.get(self.pos..self.pos + 4);
        match digits.and_then(|d| u32::from_str_radix(d, 16).ok()) {
            Some(v) if digits.is_some_and(|d| d.bytes().all(|b| b.is_ascii_hexdigit())) => {
                self.pos += 4;
                Ok(v)
            }
            _ => {
                self.pos = self.pos.saturating_sub(2);
                Err(self.error("unable to decode"))
            }
        }
    }

    /// `\u` escapes: pgBackRest itself only writes raw UTF-8, but other writers may escape; decode them fully,
    /// including surrogate pairs.
    fn unicode(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) && self.rest().starts_with("\\u") {
            self.pos += 2;
            let second = self.hex4()?;
            if (0xDC00..0xE000).contains(&second) {
                let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                return char::from_u32(code).ok_or_else(|| self.error("unable to decode"));
            }
            self.pos -= 6;
        }
        char::from_u32(first).ok_or_else(|| self.error("unable to decode"))
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        Ok(())
    }

    fn array(&mut self) -> Result<Json, JsonError> {
        self.enter()?;
        self.pos += 1;
        let mut items = Vec::new();
        self.white();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.white();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error("expected ] or ,")),
            }
        }
    }

    fn object(&mut self) -> Result<Json, JsonError> {
        self.enter()?;
        self.pos += 1;
        let mut map = BTreeMap::new();
        self.white();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Json::Object(map));
        }
        loop {
            self.white();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected '\"'"));
            }
            let key = self.string()?;
            self.white();
            if self.peek() != Some(b':') {
                return Err(self.error(&format!("expected : after key '{key}'")));
            }
            self.pos += 1;
            let value = self.value()?;
            map.insert(key, value);
            self.white();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Json::Object(map));
                }
                _ => return Err(self.error("expected } or ,")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_pgbackrest_s() {
        assert_eq!(string("a/b"), "\"a/b\"");
        assert_eq!(string("q\"b\\"), "\"q\\\"b\\\\\"");
        assert_eq!(string("\n\r\t\u{8}\u{c}"), "\"\\n\\r\\t\\b\\f\"");
        // other control characters and non-ASCII stay raw
        assert_eq!(string("\u{1}ünï"), "\"\u{1}ünï\"");
    }

    #[test]
    fn objects_render_sorted_and_compact() {
        let json =
            Json::parse(r#" { "b" : 1 , "a" : [ -2 , true , null , "x" ] , "B": {} } "#).unwrap();
        assert_eq!(json.render(), r#"{"B":{},"a":[-2,true,null,"x"],"b":1}"#);
    }

    #[test]
    fn integers_are_exact() {
        let max = Json::parse("18446744073709551615").unwrap();
        assert_eq!(max, Json::UInt(u64::MAX));
        assert_eq!(max.render(), "18446744073709551615");
        assert_eq!(
            Json::parse("-9223372036854775808").unwrap(),
            Json::Int(i64::MIN)
        );
        assert_eq!(Json::parse("-0").unwrap(), Json::UInt(0));
        assert!(Json::parse("18446744073709551616").is_err());
        assert!(Json::parse("1.5").is_err());
        assert!(Json::parse("1e3").is_err());
    }

    #[test]
    fn strings_decode_escapes() {
        let json = Json::parse(r#""a\/b\"\\\n\u0041\u00fc\ud83d\ude00""#).unwrap();
        assert_eq!(json.as_str(), Some("a/b\"\\\nAü😀"));
    }

    #[test]
    fn invalid_text_is_refused_with_position() {
        let err = Json::parse("{\"a\":1} x").unwrap_err();
        assert_eq!(err.message, "characters after JSON at: x");
        assert_eq!(Json::parse("x").unwrap_err().message, "invalid type at: x");
        assert_eq!(Json::parse("").unwrap_err().message, "expected data");
        assert!(Json::parse("\"abc").is_err());
        assert!(Json::parse("{\"a\" 1}").is_err());
        assert!(Json::parse("[1 2]").is_err());
        assert!(Json::parse("tru").is_err());
        assert!(Json::parse("\"\\q\"").is_err());
        assert!(Json::parse("\"\\u12\"").is_err());
        assert!(Json::parse(&"[".repeat(100)).is_err());
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        let json = Json::parse(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(json.render(), r#"{"a":2}"#);
    }

    #[test]
    fn round_trip_of_pgbackrest_values() {
        for text in [
            r#"{"db-id":7711938428110036608,"db-version":"15"}"#,
            r#"{"checksum-page":false,"checksum-page-error":[[2,3],6],"size":0,"timestamp":1795575588}"#,
            r#"{"group":false,"mode":"0644","user":false}"#,
            r#""0/3000028""#,
            "true",
            "5",
        ] {
            assert_eq!(Json::parse(text).unwrap().render(), text);
        }
    }
}
