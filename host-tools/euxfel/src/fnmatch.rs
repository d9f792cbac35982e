//! Python `fnmatch` glob matching (case-sensitive, as with `fnmatch.translate`):
//! `*` anything (including `/`), `?` one character, `[abc]`, `[a-z]`, `[!x]`;
//! an unclosed `[` is a literal.

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    Any,
    Star,
    Class { neg: bool, items: Vec<(char, char)> },
}

/// A compiled glob pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    toks: Vec<Tok>,
}

impl Pattern {
    pub fn new(pat: &str) -> Pattern {
        let c: Vec<char> = pat.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < c.len() {
            match c[i] {
                '*' => {
                    if !matches!(toks.last(), Some(Tok::Star)) {
                        toks.push(Tok::Star);
                    }
                    i += 1;
                }
                '?' => {
                    toks.push(Tok::Any);
                    i += 1;
                }
                '[' => {
                    let mut j = i + 1;
                    if j < c.len() && c[j] == '!' {
                        j += 1;
                    }
                    if j < c.len() && c[j] == ']' {
                        j += 1;
                    }
                    while j < c.len() && c[j] != ']' {
                        j += 1;
                    }
                    if j >= c.len() {
                        toks.push(Tok::Lit('['));
                        i += 1;
                    } else {
                        let mut k = i + 1;
                        let neg = c[k] == '!';
                        if neg {
                            k += 1;
                        }
                        let mut items = Vec::new();
                        let mut first = true;
                        while k < j {
                            let a = c[k];
                            if !first && a == ']' {
                                break;
                            }
                            first = false;
                            if k + 2 < j && c[k + 1] == '-' {
                                let b = c[k + 2];
                                if a <= b {
                                    items.push((a, b));
                                }
                                k += 3;
                            } else {
                                items.push((a, a));
                                k += 1;
                            }
                        }
                        toks.push(Tok::Class { neg, items });
                        i = j + 1;
                    }
                }
                ch => {
                    toks.push(Tok::Lit(ch));
                    i += 1;
                }
            }
        }
        Pattern { toks }
    }

    /// Whether the whole of `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        let c: Vec<char> = s.chars().collect();
        // Iterative matcher with backtracking to the last star.
        let (mut ti, mut si) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while si < c.len() {
            if ti < self.toks.len() {
                match &self.toks[ti] {
                    Tok::Star => {
                        star = Some((ti, si));
                        ti += 1;
                        continue;
                    }
                    t if one(t, c[si]) => {
                        ti += 1;
                        si += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            match star {
                Some((st, ss)) => {
                    ti = st + 1;
                    si = ss + 1;
                    star = Some((st, ss + 1));
                }
                None => return false,
            }
        }
        self.toks[ti..].iter().all(|t| matches!(t, Tok::Star))
    }

    /// Whether the pattern has wildcards (`*`, `?` or `[`), like EXtra-data's check.
    pub fn has_wildcards(pat: &str) -> bool {
        pat.contains(['*', '?', '['])
    }
}

fn one(t: &Tok, ch: char) -> bool {
    match t {
        Tok::Lit(c) => *c == ch,
        Tok::Any => ch != '\n',
        Tok::Star => false,
        Tok::Class { neg, items } => {
            let hit = items.iter().any(|&(a, b)| a <= ch && ch <= b);
            hit != *neg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnmatch(s: &str, pat: &str) -> bool {
        Pattern::new(pat).matches(s)
    }

    #[test]
    fn globs() {
        assert!(fnmatch("SA1_XTD2_XGM/DOOCS/MAIN", "*XGM/*"));
        assert!(fnmatch("a/b", "a*"));
        assert!(!fnmatch("abc", "a?"));
        assert!(fnmatch("ab", "a?"));
        assert!(fnmatch("a1", "a[0-9]"));
        assert!(!fnmatch("ax", "a[0-9]"));
        assert!(fnmatch("ax", "a[!0-9]"));
        assert!(fnmatch("a[", "a["));
        assert!(fnmatch("", "*"));
        assert!(!fnmatch("x", ""));
        assert!(fnmatch("a]", "a[]]"));
        assert!(fnmatch("image.data", "image.*"));
        assert!(!fnmatch("Image.data", "image.*"));
    }
}
