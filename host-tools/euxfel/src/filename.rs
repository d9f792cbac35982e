//! The parts of a EuXFEL file name (`RAW-R0450-DA01-S00000.h5`).

/// Information from a file name `RAW-R0450-DA01-S00000.h5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilenameInfo {
    pub category: String,
    pub run: u32,
    pub aggregator: String,
    pub sequence: u32,
}

impl FilenameInfo {
    /// Parse like EXtra-data's `([A-Z]+)-R(\d{4})-(\w+)(?:-S(\d{5}))?.h5` (matched at the start).
    pub fn parse(name: &str) -> Option<FilenameInfo> {
        let b = name.as_bytes();
        let mut i = 0;
        while i < b.len() && b[i].is_ascii_uppercase() {
            i += 1;
        }
        if i == 0 || b.get(i) != Some(&b'-') || b.get(i + 1) != Some(&b'R') {
            return None;
        }
        let category = name[..i].to_string();
        let r0 = i + 2;
        if b.len() < r0 + 5 || !b[r0..r0 + 4].iter().all(u8::is_ascii_digit) || b[r0 + 4] != b'-' {
            return None;
        }
        let run: u32 = name[r0..r0 + 4].parse().ok()?;
        let rest = &name[r0 + 5..];
        // \w+ is greedy and may contain '-'? No: \w excludes '-'. Then (?:-S\d{5})? then any char then 'h5'.
        let wlen = rest
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(rest.len(), |(p, _)| p);
        if wlen == 0 {
            return None;
        }
        let agg = &rest[..wlen];
        let after = &rest[wlen..];
        let rb = after.as_bytes();
        let (seq, tail) = if rb.len() >= 7
            && rb[0] == b'-'
            && rb[1] == b'S'
            && rb[2..7].iter().all(u8::is_ascii_digit)
        {
            (after[2..7].parse().ok()?, &after[7..])
        } else {
            (0, after)
        };
        // '.h5' where '.' is any char.
        let tc: Vec<char> = tail.chars().take(3).collect();
        if tc.len() < 3 || tc[1] != 'h' || tc[2] != '5' {
            // \w+ backtracking: the regex could also match a shorter aggregator when the
            // name continues with word chars; real names never need that.
            return None;
        }
        Some(FilenameInfo {
            category,
            run,
            aggregator: agg.to_string(),
            sequence: if agg == "OVERVIEW" { 0 } else { seq },
        })
    }
}
