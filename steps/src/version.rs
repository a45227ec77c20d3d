//! Release versions and version ranges.
//!
//! A version is 1 to 4 dot-separated numbers, optionally prefixed with `v` and followed by a
//! pre-release (`-rc.1`) and/or build metadata (`+build.5`, ignored in comparisons):
//! `1.2.3`, `v1.2.3.4`, `2.0.0-rc.1`.
//!
//! Ordering (documented, tested): numbers compare numerically part by part, a missing part
//! counting as 0 (`1.2` == `1.2.0` == `1.2.0.0`); a version with a pre-release is lower than
//! the same version without (`2.0.0-rc.1` < `2.0.0`); pre-releases compare identifier by
//! identifier, numeric ones numerically and below alphanumeric ones, a shorter list first
//! when it is a prefix (`-alpha` < `-alpha.1` < `-beta` < `-rc.1` < `-rc.2` < `-rc.10`).
//!
//! A range is `*`, a single version (exactly that version), or comma-separated comparisons
//! (`>=1.0.0, <2.0.0`) with `=`, `>`, `>=`, `<`, `<=`, all of which must hold. Ranges use the
//! ordering above and nothing else (`2.0.0-rc.1` is inside `<2.0.0`).

use std::cmp::Ordering;
use std::fmt;

#[derive(Clone, Debug)]
pub struct Version {
    parts: Vec<u64>,
    pre: Vec<String>,
    text: String,
}

impl Version {
    pub fn parse(text: &str) -> Result<Version, String> {
        let bad = |why: &str| format!("version {text:?} is not valid: {why}");
        let t = text.trim();
        let t = t
            .strip_prefix('v')
            .or_else(|| t.strip_prefix('V'))
            .unwrap_or(t);
        let t = t.split('+').next().unwrap_or("");
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (t, None),
        };
        let parts: Vec<u64> = core
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    Err(bad("expected numbers separated by dots"))
                } else {
                    p.parse::<u64>().map_err(|_| bad("number too large"))
                }
            })
            .collect::<Result<_, _>>()?;
        if parts.is_empty() || parts.len() > 4 {
            return Err(bad("expected 1 to 4 numeric parts"));
        }
        let pre = match pre {
            None => Vec::new(),
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_string).collect();
                if ids.iter().any(|i| {
                    i.is_empty() || !i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }) {
                    return Err(bad(
                        "pre-release must be dot-separated [0-9A-Za-z-] identifiers",
                    ));
                }
                ids
            }
        };
        Ok(Version {
            parts,
            pre,
            text: text.trim().to_string(),
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn cmp_pre(a: &[String], b: &[String]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    for (x, y) in a.iter().zip(b) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(m), Ok(n)) => m.cmp(&n),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        for i in 0..4 {
            let a = self.parts.get(i).copied().unwrap_or(0);
            let b = other.parts.get(i).copied().unwrap_or(0);
            if a != b {
                return a.cmp(&b);
            }
        }
        cmp_pre(&self.pre, &other.pre)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Version) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// A set of versions (a patch's `from`).
#[derive(Clone, Debug)]
pub struct Range {
    any: bool,
    terms: Vec<(Ordering, bool, Version)>, // (direction, inclusive, bound); Equal = exact
    text: String,
}

impl Range {
    pub fn parse(text: &str) -> Result<Range, String> {
        let t = text.trim();
        if t == "*" {
            return Ok(Range {
                any: true,
                terms: vec![],
                text: t.into(),
            });
        }
        let mut terms = Vec::new();
        for term in t.split(',').map(str::trim) {
            let (dir, incl, rest) = if let Some(r) = term.strip_prefix(">=") {
                (Ordering::Greater, true, r)
            } else if let Some(r) = term.strip_prefix("<=") {
                (Ordering::Less, true, r)
            } else if let Some(r) = term.strip_prefix('>') {
                (Ordering::Greater, false, r)
            } else if let Some(r) = term.strip_prefix('<') {
                (Ordering::Less, false, r)
            } else if let Some(r) = term.strip_prefix('=') {
                (Ordering::Equal, true, r)
            } else {
                (Ordering::Equal, true, term)
            };
            let v = Version::parse(rest).map_err(|e| format!("range {text:?}: {e}"))?;
            terms.push((dir, incl, v));
        }
        if terms.is_empty() {
            return Err(format!("range {text:?} is empty"));
        }
        Ok(Range {
            any: false,
            terms,
            text: t.into(),
        })
    }

    pub fn contains(&self, v: &Version) -> bool {
        self.any
            || self.terms.iter().all(|(dir, incl, bound)| {
                let o = v.cmp(bound);
                o == *dir && *dir != Ordering::Equal || (o == Ordering::Equal && *incl)
            })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn ordering() {
        let sorted = [
            "0.9",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-rc.1",
            "1.0.0-rc.2",
            "1.0.0-rc.10",
            "1.0.0",
            "1.0.0.1",
            "1.0.1",
            "v1.2.3",
            "1.2.3.4",
            "1.10.0",
            "2.0.0-rc.1",
            "2.0.0",
        ];
        for w in sorted.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1.2"), v("1.2.0.0"));
        assert_eq!(v("v1.2.3"), v("1.2.3+build.7"));
        assert_eq!(v("0.0.13.2").to_string(), "0.0.13.2");
        assert!(v("2.0.0-rc.1").is_prerelease());
    }

    #[test]
    fn bad_versions_are_refused() {
        for bad in [
            "",
            "v",
            "1..2",
            "1.2.3.4.5",
            "1.x",
            "1.2-",
            "1.2-rc..1",
            "-1",
            "1.2.3-r c",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ranges() {
        let r = Range::parse(">=1.0.0, <2.0.0").unwrap();
        assert!(r.contains(&v("1.0.0")) && r.contains(&v("1.9.9.9")));
        assert!(!r.contains(&v("2.0.0")) && !r.contains(&v("0.9")));
        // Plain ordering: a pre-release of the upper bound sorts below it.
        assert!(r.contains(&v("2.0.0-rc.1")));
        assert!(Range::parse("1.2.3").unwrap().contains(&v("v1.2.3")));
        assert!(!Range::parse("1.2.3").unwrap().contains(&v("1.2.4")));
        assert!(Range::parse("*").unwrap().contains(&v("0.0.1")));
        assert!(Range::parse(">1.0").unwrap().contains(&v("1.0.1")));
        assert!(!Range::parse(">1.0").unwrap().contains(&v("1.0")));
        assert!(Range::parse("<=1.0").unwrap().contains(&v("1.0")));
        assert!(Range::parse("=1.0").unwrap().contains(&v("1.0.0")));
        assert!(Range::parse(">=x").is_err() && Range::parse("").is_err());
    }
}
