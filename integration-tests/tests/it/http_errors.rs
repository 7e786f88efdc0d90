//! Every HTTP endpoint answers what it refuses as JSON: an oversized body
//! (413, naming the limit, closing the connection), another media type
//! (415), another method (405), an unknown route (404); a form value whose
//! percent-encoded bytes are not UTF-8 is `invalid_request`, never decoded
//! into U+FFFD.

use agentsec_integration_tests::http::{self, HttpResponse};
use agentsec_integration_tests::{Service, TestCluster};

/// The JSON error of `response`, which must have `status`.
fn json_error(what: &str, response: &HttpResponse, status: u16) -> anyhow::Result<String> {
    assert_eq!(
        response.status,
        status,
        "{what}: {}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json")),
        "{what}: {:?}",
        response.headers
    );
    let body = response.json()?;
    assert!(body["error"].is_string(), "{what}: {body}");
    // RFC 6749's shape on the OAuth endpoints, `{"error": ...}` at AuthZEN.
    let description = body
        .get("error_description")
        .unwrap_or(&body["error"])
        .as_str()
        .unwrap_or_default();
    Ok(description.to_owned())
}

#[tokio::test]
async fn http_errors_are_json_at_every_endpoint() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let endpoints = [
        (
            Service::Identity,
            "/oauth2/token",
            "application/x-www-form-urlencoded",
            16 * 1024,
        ),
        (
            Service::Exchange,
            "/oauth2/token",
            "application/x-www-form-urlencoded",
            24 * 1024,
        ),
        (
            Service::Policy,
            "/access/v1/evaluation",
            "application/json",
            4 * 1024 * 1024,
        ),
    ];
    for (service, path, media_type, limit) in endpoints {
        let addr = cluster.addr(service);
        let what = format!("{service:?} {path}");

        // Announced, not sent: the server answers before reading a byte
        // of it (unread bytes would turn its close into a reset).
        let response = http::request_declaring(
            addr,
            "POST",
            path,
            &[("Content-Type", media_type)],
            limit + 1,
            b"",
        )
        .await?;
        let description = json_error(&format!("{what}: oversized"), &response, 413)?;
        assert!(
            description.contains(&limit.to_string()),
            "{what}: {description}"
        );
        assert_eq!(response.header("connection"), Some("close"), "{what}");

        let response = http::request(
            addr,
            "POST",
            path,
            &[("Content-Type", "text/plain"), ("X-Request-ID", "req-415")],
            b"x=y",
        )
        .await?;
        let description = json_error(&format!("{what}: media type"), &response, 415)?;
        assert!(description.contains(media_type), "{what}: {description}");
        assert_eq!(response.header("x-request-id"), Some("req-415"), "{what}");

        // A route that takes no POST answers 405 whatever the media type.
        let metadata = match service {
            Service::Policy => "/.well-known/authzen-configuration",
            _ => "/.well-known/oauth-authorization-server",
        };
        let response = http::request(
            addr,
            "POST",
            metadata,
            &[("Content-Type", "text/plain")],
            b"x",
        )
        .await?;
        json_error(&format!("{what}: POST to {metadata}"), &response, 405)?;

        let response = http::request(addr, "PUT", path, &[], b"").await?;
        json_error(&format!("{what}: method"), &response, 405)?;
        assert!(response
            .header("allow")
            .is_some_and(|allow| allow.contains("POST")));

        let response = http::get(addr, "/no/such/endpoint").await?;
        json_error(&format!("{what}: unknown route"), &response, 404)?;
    }

    // Percent-encoded bytes that are not UTF-8.
    for service in [Service::Identity, Service::Exchange] {
        let refused = http::request(
            cluster.addr(service),
            "POST",
            "/oauth2/token",
            &[("Content-Type", "text/plain")],
            b"",
        )
        .await?;
        assert_eq!(
            refused.header("cache-control"),
            Some("no-store"),
            "{service:?}"
        );
        assert_eq!(refused.header("pragma"), Some("no-cache"), "{service:?}");
        assert_eq!(refused.json()?["error"], "invalid_request", "{service:?}");

        let response = http::request(
            cluster.addr(service),
            "POST",
            "/oauth2/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            b"grant_type=client_credentials&scope=%FF%FE",
        )
        .await?;
        assert_eq!(response.json()?["error"], "invalid_request", "{service:?}");
        let description = json_error(&format!("{service:?}: not UTF-8"), &response, 400)?;
        assert!(
            description.contains("`scope`"),
            "{service:?}: {description}"
        );
        assert!(
            !description.contains('\u{fffd}'),
            "{service:?}: {description}"
        );
    }
    cluster.shutdown().await
}
