//! A scanner for the run map's own layout (a list of flat objects of numbers,
//! strings, lists of them and a string-to-string object): several times faster than
//! a general JSON parser on a map of hundreds of thousands of train IDs. It answers
//! only for plain input (no escapes in strings, integers without sign, fraction or
//! exponent where integers are expected) and gives `None` for anything else, which
//! then goes to serde_json: it never decides what a map means by itself.

use std::collections::BTreeMap;

use super::MapEntry;

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next non-space byte, consumed.
    fn next(&mut self) -> Option<u8> {
        self.ws();
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let s = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
        self.i += 1;
        Some(s)
    }

    /// An unsigned integer: digits only, no leading zero, no overflow.
    fn uint(&mut self) -> Option<u64> {
        self.ws();
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&c @ b'0'..=b'9') = self.b.get(self.i) {
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let len = self.i - start;
        let leading_zero = len > 1 && self.b.get(start) == Some(&b'0');
        if len == 0 || leading_zero || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(v)
    }

    /// A number as f64, parsed with Rust's correctly rounded parser.
    fn float(&mut self) -> Option<f64> {
        self.ws();
        let start = self.i;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
        }
        let tok = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
        // JSON numbers only (Rust would also take "inf", "1.", ".5", "+1").
        let digits_ok = tok.starts_with(|c: char| c == '-' || c.is_ascii_digit())
            && !tok.ends_with('.')
            && !tok.contains(".e")
            && !tok.contains(".E")
            && !tok.starts_with("-.");
        if !digits_ok {
            return None;
        }
        tok.parse().ok()
    }

    /// `[a, b, ...]` of items read by `item`.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.expect(b'[')?;
        let mut out = Vec::new();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(out);
        }
        loop {
            out.push(item(self)?);
            match self.next()? {
                b',' => {}
                b']' => return Some(out),
                _ => return None,
            }
        }
    }

    /// `{"k": v, ...}`, calling `field` for each key.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            let k = self.string()?;
            self.expect(b':')?;
            field(self, k)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn entry(&mut self) -> Option<MapEntry> {
        let mut filename = None;
        let mut mtime = None;
        let mut size = None;
        let mut train_ids = None;
        let mut control_sources = None;
        let mut instrument_sources = None;
        let mut legacy_sources = None;
        let mut suspect_train_indices = None;
        fn set<T>(slot: &mut Option<T>, v: Option<T>) -> Option<()> {
            // A repeated field is an error for serde too: left to it.
            if slot.is_some() {
                return None;
            }
            *slot = Some(v?);
            Some(())
        }
        let strings = |s: &mut Self| s.string().map(str::to_owned);
        self.object(|s, k| match k {
            "filename" => set(&mut filename, s.string().map(str::to_owned)),
            "mtime" => set(&mut mtime, s.float()),
            "size" => set(&mut size, s.uint()),
            "train_ids" => set(&mut train_ids, s.list(Self::uint)),
            "control_sources" => set(&mut control_sources, s.list(strings)),
            "instrument_sources" => set(&mut instrument_sources, s.list(strings)),
            "legacy_sources" => {
                let mut m = BTreeMap::new();
                let parsed = s.object(|s, k| {
                    let v = s.string()?;
                    m.insert(k.to_owned(), v.to_owned()).is_none().then_some(())
                });
                set(&mut legacy_sources, parsed.map(|()| m))
            }
            "suspect_train_indices" => set(
                &mut suspect_train_indices,
                s.list(|s| s.uint().and_then(|v| usize::try_from(v).ok())),
            ),
            // Other fields (serde ignores them) are left to serde_json.
            _ => None,
        })?;
        Some(MapEntry {
            filename: filename?,
            mtime: mtime?,
            size: size?,
            train_ids: train_ids?,
            control_sources: control_sources?,
            instrument_sources: instrument_sources?,
            legacy_sources: legacy_sources?,
            suspect_train_indices: suspect_train_indices?,
        })
    }
}

/// The entries of a map in its plain layout, or `None` (then serde_json decides).
pub(super) fn entries(text: &[u8]) -> Option<Vec<MapEntry>> {
    let mut s = Scanner { b: text, i: 0 };
    let v = s.list(Scanner::entry)?;
    s.ws();
    (s.i == text.len()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::entries;
    use crate::runmap::MapEntry;

    const PLAIN: &str = r#"[
  {
    "filename": "RAW-R0450-DA01-S00000.h5",
    "mtime": 1763749123.456789,
    "size": 123456,
    "train_ids": [
      10000,
      10001,
      0,
      18446744073709551615
    ],
    "control_sources": ["SA1_XTD2_XGM/DOOCS/MAIN"],
    "instrument_sources": [],
    "legacy_sources": {"A/B/C:out": "D/E/F:out"},
    "suspect_train_indices": [1]
  },
  {"filename": "b.h5", "mtime": 17637e5, "size": 0, "train_ids": [],
   "control_sources": [], "instrument_sources": ["X:y", "Z:w"], "legacy_sources": {},
   "suspect_train_indices": []}
]
"#;

    fn serde(text: &str) -> Option<Vec<MapEntry>> {
        serde_json::from_str(text).ok()
    }

    // What the scanner answers, serde_json answers the same; where it cannot
    // answer, it says so.
    #[test]
    fn agrees_with_serde_or_declines() {
        let e = entries(PLAIN.as_bytes()).expect("plain layout");
        assert_eq!(Some(e.clone()), serde(PLAIN));
        assert_eq!(e[0].mtime, 1763749123.456789);
        assert_eq!(e[0].train_ids[3], u64::MAX);
        assert_eq!(e[1].mtime, 1763700000.0);
        assert!(entries(b"[]").expect("empty").is_empty());
        let declined = [
            PLAIN.replace("RAW-R0450", "RAW\\u002dR0450"), // escape
            PLAIN.replace("10001", "10001.0"),             // not an integer
            PLAIN.replace("10001", "-1"),                  // sign
            PLAIN.replace("10001", "010001"),              // leading zero
            PLAIN.replace("18446744073709551615", "18446744073709551616"), // overflow
            PLAIN.replace("\"size\": 0,", "\"size\": 0, \"extra\": 1,"), // unknown field
            PLAIN.replace("\"size\": 0,", "\"size\": 0, \"size\": 1,"), // repeated field
            PLAIN.replace("\"size\": 0,", ""),             // missing field
            PLAIN.replace("1763749123.456789", "1763749123."), // not a JSON number
            PLAIN.replace("1763749123.456789", "inf"),
            PLAIN.replace("[1]", "[1,]"),        // trailing comma
            format!("{PLAIN}x"),                 // trailing text
            PLAIN.replace("\"D/E/F:out\"", "1"), // legacy value not a string
        ];
        for text in &declined {
            assert_eq!(entries(text.as_bytes()), None, "{text}");
        }
        // Where serde reads an entry the scanner declines, the result is serde's.
        let unknown = &declined[5];
        assert!(serde(unknown).is_some());
        assert_eq!(super::super::parse_entries(unknown.as_bytes()), e);
    }
}
