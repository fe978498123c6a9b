//! The proxy's path normaliser: the only paths forwarded are ones that, decoded or not,
//! stay under a public API prefix (issue 9: `..`, `%2e%2e` and `%2E%2E` reached the
//! services' internal routes because the upstream's URL parser resolved them).
//!
//! The raw request path is checked segment by segment, before any routing: a dot
//! segment, an empty segment, a byte outside RFC 3986's `pchar` (a backslash, a control
//! byte, a space…), or a percent escape that decodes to `.`, `/`, `\`, `%` (double
//! encoding) or a control byte is refused. What is left is forwarded as it came, so no
//! decoder downstream can turn it into something else.

use crate::proxy::Upstream;

/// Public API prefixes (as path segments) and the upstream each belongs to.
const PREFIXES: &[(&str, &str, Upstream)] = &[
    ("api", "learning", Upstream::LearningCenter),
    ("api", "orders", Upstream::Order),
];

/// A request path that may be forwarded, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPath {
    upstream: Upstream,
    path: String,
}

impl ApiPath {
    pub fn upstream(&self) -> Upstream {
        self.upstream
    }

    /// The path as forwarded: `/`-separated, no dot or empty segments.
    pub fn as_str(&self) -> &str {
        &self.path
    }
}

/// Why a path is not forwarded (every reason answers 404: nothing is there for a browser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not under a public API prefix")]
    OutsidePrefix,
    #[error("dot or empty path segment")]
    DotOrEmptySegment,
    #[error("character outside RFC 3986 pchar (a backslash, control, space…)")]
    ForbiddenByte,
    #[error("percent escape of a dot, slash, backslash, percent or control character")]
    ForbiddenEscape,
    #[error("malformed percent escape")]
    MalformedEscape,
}

/// Checks a raw (still percent-encoded) request path. See the module docs for the rules.
pub fn normalise(raw: &str) -> Result<ApiPath, Refused> {
    let rest = raw.strip_prefix('/').ok_or(Refused::OutsidePrefix)?;
    let segments: Vec<&str> = rest.split('/').collect();
    for segment in &segments {
        check_segment(segment)?;
    }
    let upstream = PREFIXES
        .iter()
        .find(|(a, b, _)| segments.len() >= 2 && segments[0] == *a && segments[1] == *b)
        .map(|(_, _, upstream)| *upstream)
        .ok_or(Refused::OutsidePrefix)?;
    Ok(ApiPath {
        upstream,
        path: raw.to_owned(),
    })
}

fn check_segment(segment: &str) -> Result<(), Refused> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err(Refused::DotOrEmptySegment);
    }
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let decoded = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or(Refused::MalformedEscape)?;
                if matches!(decoded, b'.' | b'/' | b'\\' | b'%') || decoded.is_ascii_control() {
                    return Err(Refused::ForbiddenEscape);
                }
                i += 3;
            }
            b if is_pchar(b) => i += 1,
            _ => return Err(Refused::ForbiddenByte),
        }
    }
    Ok(())
}

/// RFC 3986 `pchar` less `%` (escapes are checked on their own): unreserved, sub-delims,
/// `:` and `@`.
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn api_paths_under_a_prefix_are_forwarded_unchanged() {
        let p = normalise("/api/orders/7181245133201408/pay").unwrap();
        assert_eq!(p.upstream(), Upstream::Order);
        assert_eq!(p.as_str(), "/api/orders/7181245133201408/pay");
        // Order creation is the prefix itself.
        assert_eq!(normalise("/api/orders").unwrap().as_str(), "/api/orders");
        let p = normalise("/api/learning/my-courses").unwrap();
        assert_eq!(p.upstream(), Upstream::LearningCenter);
        // An escape of an ordinary character is harmless and passes as it came.
        assert!(normalise("/api/learning/caf%C3%A9").is_ok());
    }

    #[test]
    fn traversal_and_encodings_are_refused() {
        use Refused::*;
        let cases = [
            (
                "/api/orders/../../internal/orders/1/refund",
                DotOrEmptySegment,
            ),
            ("/api/learning/%2e%2e/%2e%2e/health", ForbiddenEscape),
            (
                "/api/learning/%2E%2E/%2E%2E/internal/choose-courses/1",
                ForbiddenEscape,
            ),
            ("/api/orders/./1", DotOrEmptySegment),
            ("/api/orders//1", DotOrEmptySegment),
            ("/api/orders/1/", DotOrEmptySegment),
            ("/api/orders/.%2e/x", ForbiddenEscape),
            ("/api/orders/1%2f..%2f..%2finternal", ForbiddenEscape),
            ("/api/orders/1%2F..", ForbiddenEscape),
            ("/api/orders/1%5c..%5cinternal", ForbiddenEscape),
            ("/api/orders/%252e%252e/internal", ForbiddenEscape),
            ("/api/orders/..\\internal", ForbiddenByte),
            ("/api/orders/1%00", ForbiddenEscape),
            ("/api/orders/a b", ForbiddenByte),
            ("/api/orders/caf\u{e9}", ForbiddenByte),
            ("/api/orders/1%2", MalformedEscape),
            ("/api/orders/1%zz", MalformedEscape),
            ("/api", OutsidePrefix),
            ("/api/", DotOrEmptySegment),
            ("/api/ordersx/1", OutsidePrefix),
            ("/internal/orders/1/refund", OutsidePrefix),
            ("api/orders/1", OutsidePrefix),
            ("/%61pi/orders/1", OutsidePrefix),
        ];
        for (raw, why) in cases {
            assert_eq!(normalise(raw), Err(why), "{raw}");
        }
    }

    /// Percent-decodes once (malformed escapes stay as they are).
    fn decode(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && let Some(v) = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just(String::new()),
            Just("%2e".to_owned()),
            Just("%2E%2e".to_owned()),
            Just("%2f".to_owned()),
            Just("%5C".to_owned()),
            Just("%252e".to_owned()),
            Just("\\".to_owned()),
            Just("api".to_owned()),
            Just("orders".to_owned()),
            Just("learning".to_owned()),
            Just("internal".to_owned()),
            "[a-zA-Z0-9._~%-]{1,8}",
            "\\PC{0,6}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just("/api/orders"), Just("/api/learning"), Just("")],
            prop::collection::vec(segment(), 0..6),
        )
            .prop_map(|(start, segs)| {
                segs.iter()
                    .fold(start.to_owned(), |path, seg| format!("{path}/{seg}"))
            })
    }

    // Proptest's default number of cases in the suite; `cargo xtask fuzz` runs every
    // `fuzz_…` test with `PROPTEST_CASES` raised.
    proptest! {
        #[test]
        fn fuzz_an_accepted_path_has_no_dot_segment_and_stays_under_its_prefix(raw in path()) {
            if let Ok(p) = normalise(&raw) {
                let prefix = match p.upstream() {
                    Upstream::Order => "/api/orders",
                    Upstream::LearningCenter => "/api/learning",
                };
                let rest = p.as_str().strip_prefix(prefix);
                prop_assert!(rest.is_some_and(|r| r.is_empty() || r.starts_with('/')));
                // Neither raw nor once- or twice-decoded does the path hold a dot segment,
                // a backslash or a new slash.
                let once = decode(p.as_str());
                let twice = decode(&String::from_utf8_lossy(&once));
                for form in [p.as_str().as_bytes(), &once, &twice] {
                    prop_assert!(!form.contains(&b'\\'));
                    for seg in form.split(|b| *b == b'/').skip(1) {
                        prop_assert!(!seg.is_empty() && seg != b"." && seg != b"..");
                    }
                    prop_assert_eq!(
                        form.iter().filter(|b| **b == b'/').count(),
                        p.as_str().matches('/').count()
                    );
                }
                // What the upstream's URL parser makes of it is the same path.
                let url = reqwest::Url::parse(&format!("http://upstream{}", p.as_str())).unwrap();
                prop_assert_eq!(url.path(), p.as_str());
            }
        }

        #[test]
        fn fuzz_any_string_is_answered_without_panicking(raw in "\\PC{0,40}") {
            let _ = normalise(&raw);
        }
    }
}
