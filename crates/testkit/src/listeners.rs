//! The listener split of a running service (issue 9): what belongs to the internal
//! listener is not routed on the public one, and the other way round.

use crate::raw_http::{exchange, status};

/// What the platform serves on every service's internal listener.
pub const PLATFORM_INTERNAL: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
];

/// Asserts that every `(method, path)` of `internal` (and the platform's health and
/// metrics) answers `404` on the `public` base URL and is routed (anything but `404`) on
/// the `internal` one, and that every one of `public` is routed on `public` and `404` on
/// `internal`. Requests carry no credential and an empty JSON body: a routed path answers
/// `401` or `400` at worst, an unrouted one `404`.
pub async fn assert_split(
    public: &str,
    internal: &str,
    internal_routes: &[(&str, &str)],
    public_routes: &[(&str, &str)],
) {
    let send = |base: &str, method: &str, path: &str| {
        let base = base.to_owned();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2"
        );
        async move { status(&exchange(&base, &head, b"{}").await) }
    };
    for &(method, path) in PLATFORM_INTERNAL.iter().chain(internal_routes) {
        let on_public = send(public, method, path).await;
        assert_eq!(
            on_public, 404,
            "{method} {path} on the public listener {public}"
        );
        let on_internal = send(internal, method, path).await;
        assert_ne!(
            on_internal, 404,
            "{method} {path} on the internal listener {internal}"
        );
    }
    for &(method, path) in public_routes {
        let on_public = send(public, method, path).await;
        assert_ne!(
            on_public, 404,
            "{method} {path} on the public listener {public}"
        );
        let on_internal = send(internal, method, path).await;
        assert_eq!(
            on_internal, 404,
            "{method} {path} on the internal listener {internal}"
        );
    }
}
