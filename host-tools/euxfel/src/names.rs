//! Name matching: suggestions for misspelt source and key names, and EuXFEL's
//! detector module source names.

use std::collections::BTreeSet;

/// Suggest near matches for a name among candidates.
pub(crate) fn near_matches(name: &str, candidates: &BTreeSet<String>) -> String {
    let lname = name.to_lowercase();
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
        .map(|c| {
            let lc = c.to_lowercase();
            let d = if lc.contains(&lname) || lname.contains(&lc) {
                0
            } else {
                levenshtein(&lname, &lc)
            };
            (d, c)
        })
        .collect();
    scored.sort();
    let limit = (name.len() / 2).max(3);
    let near: Vec<&str> = scored
        .iter()
        .filter(|(d, _)| *d <= limit)
        .take(5)
        .map(|(_, c)| c.as_str())
        .collect();
    if near.is_empty() {
        String::new()
    } else {
        format!("; did you mean: {}?", near.join(", "))
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let c = if a[i - 1] == b[j - 1] { 0 } else { 1 };
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + c);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Match `(.+/(?:DET|CORR))/(\d+)CH` at the start: (detector name, module number string).
pub fn detector_source_match(s: &str) -> Option<(String, String)> {
    // Greedy `.+` then backtrack: find the last position where the rest matches.
    let b = s.as_bytes();
    let mut best = None;
    for (i, _) in s.match_indices('/') {
        // name = s[..i] must end with "/DET" or "/CORR" and be more than that
        let name = &s[..i];
        let ok = (name.ends_with("/DET") && name.len() > 4)
            || (name.ends_with("/CORR") && name.len() > 5);
        if !ok {
            continue;
        }
        let mut j = i + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > i + 1 && s[j..].starts_with("CH") {
            best = Some((name.to_string(), s[i + 1..j].to_string()));
        }
    }
    best
}
