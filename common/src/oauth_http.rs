//! Pieces of the OAuth 2.0 HTTP endpoints shared by identity-svc and
//! exchange-svc: the form body (RFC 6749 §3.1: a parameter given twice is
//! refused, except those the endpoint lets repeat, like RFC 8693's
//! `audience` and `resource`), the `Authorization` header, and the
//! `no-store` headers of token responses.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse as _, Response};
use serde::Serialize;

use crate::error::{OAuthError, OAuthErrorCode};

fn invalid_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new(OAuthErrorCode::InvalidRequest, description)
}

/// At most 64 printable ASCII chars of an untrusted value, for messages.
pub fn printable(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

/// The parameters of an `application/x-www-form-urlencoded` body.
pub struct Form(HashMap<String, Vec<String>>);

impl Form {
    /// Parses the body; `repeatable` names the parameters that may appear
    /// more than once.
    pub fn parse(
        headers: &HeaderMap,
        body: &[u8],
        repeatable: &[&str],
    ) -> Result<Self, OAuthError> {
        if !crate::http_boundary::has_media_type(headers, "application/x-www-form-urlencoded") {
            return Err(invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        if std::str::from_utf8(body).is_err() {
            return Err(invalid_request("the body is not UTF-8"));
        }
        let mut params: HashMap<String, Vec<String>> = HashMap::new();
        for pair in body
            .split(|byte| *byte == b'&')
            .filter(|pair| !pair.is_empty())
        {
            let (name, value) = match pair.iter().position(|byte| *byte == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &pair[..0]),
            };
            let name = form_decode(name)
                .ok_or_else(|| invalid_request("a parameter name is not UTF-8 once decoded"))?;
            let value = form_decode(value).ok_or_else(|| {
                invalid_request(format!(
                    "parameter `{}` is not UTF-8 once decoded",
                    printable(&name)
                ))
            })?;
            let values = params.entry(name.clone()).or_default();
            if !values.is_empty() && !repeatable.contains(&name.as_str()) {
                return Err(invalid_request(format!(
                    "parameter `{}` is given more than once",
                    printable(&name)
                )));
            }
            values.push(value);
        }
        Ok(Self(params))
    }

    /// The value of a parameter that appears at most once.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .and_then(|values| values.first())
            .map(String::as_str)
    }

    /// Removes and returns a parameter that appears at most once.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.0
            .remove(name)
            .and_then(|values| values.into_iter().next())
    }

    /// Removes and returns every value of a repeatable parameter.
    pub fn take_all(&mut self, name: &str) -> Vec<String> {
        self.0.remove(name).unwrap_or_default()
    }
}

/// One name or value of a form body decoded (`+` is a space, `%XX` a
/// byte); `None` when the bytes are not UTF-8. A `%` not followed by two
/// hex digits stands for itself, as the WHATWG urlencoded parser reads it.
pub fn form_decode(encoded: &[u8]) -> Option<String> {
    let hex = |byte: u8| char::from(byte).to_digit(16);
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut index = 0;
    while index < encoded.len() {
        let byte = encoded[index];
        let escaped = (byte == b'%')
            .then(|| {
                Some((
                    hex(*encoded.get(index + 1)?)?,
                    hex(*encoded.get(index + 2)?)?,
                ))
            })
            .flatten();
        match (byte, escaped) {
            (_, Some((high, low))) => {
                bytes.push((high * 16 + low) as u8);
                index += 3;
                continue;
            }
            (b'+', None) => bytes.push(b' '),
            (other, None) => bytes.push(other),
        }
        index += 1;
    }
    String::from_utf8(bytes).ok()
}

/// The credentials of `Authorization: <scheme> <credentials>` (scheme
/// compared without case).
pub fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// RFC 7662 §2.2: `{"active": false}` alone, or `"active": true` with the
/// token's claims `C` beside it.
#[derive(Serialize)]
pub struct Introspection<C> {
    active: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    claims: Option<C>,
}

impl<C: Serialize> Introspection<C> {
    pub fn of(claims: Option<C>) -> Self {
        Self {
            active: claims.is_some(),
            claims,
        }
    }
}

/// `value` as a JSON response that is not cached (token and
/// introspection responses).
pub fn json_no_store<T: Serialize>(value: &T) -> Response {
    no_store(axum::Json(value).into_response())
}

/// RFC 6749 §5.1: token responses are not cached.
pub fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        headers
    }

    #[test]
    fn only_repeatable_parameters_repeat() {
        let mut form = Form::parse(
            &form_headers(),
            b"audience=a&audience=b&scope=x%20y",
            &["audience"],
        )
        .unwrap();
        assert_eq!(form.take_all("audience"), ["a", "b"]);
        assert_eq!(form.get("scope"), Some("x y"));
        let err = Form::parse(&form_headers(), b"scope=a&scope=b", &["audience"])
            .err()
            .unwrap();
        assert_eq!(err.code(), "invalid_request");
        assert!(err.error_description.contains("`scope`"));
    }

    #[test]
    fn other_bodies_are_refused() {
        assert!(Form::parse(&HeaderMap::new(), b"a=b", &[]).is_err());
        assert!(Form::parse(&form_headers(), &[0xff, 0xfe], &[]).is_err());
    }

    #[test]
    fn values_decode_like_the_whatwg_parser_and_must_be_utf8() {
        let form = Form::parse(
            &form_headers(),
            b"a=x+y%2Bz&b=%C3%BC&c=100%&d=%zz&e&=f",
            &[],
        )
        .unwrap();
        assert_eq!(form.get("a"), Some("x y+z"));
        assert_eq!(form.get("b"), Some("\u{fc}"));
        assert_eq!(form.get("c"), Some("100%"));
        assert_eq!(form.get("d"), Some("%zz"));
        assert_eq!(form.get("e"), Some(""));
        assert_eq!(form.get(""), Some("f"));
        for (body, names) in [
            (&b"scope=%FF"[..], "`scope`"),
            (b"scope=%C3", "`scope`"),
            (b"%FF=x", "name"),
        ] {
            let err = Form::parse(&form_headers(), body, &[]).err().unwrap();
            assert_eq!(err.code(), "invalid_request");
            assert!(
                err.error_description.contains(names),
                "{}",
                err.error_description
            );
            assert!(!err.error_description.contains('\u{fffd}'));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_body_parses_or_is_refused_without_panicking(body: Vec<u8>) {
            if let Err(err) = Form::parse(&form_headers(), &body, &[]) {
                proptest::prop_assert_eq!(err.code(), "invalid_request");
            }
        }

        #[test]
        fn encoded_pairs_decode_to_themselves(pairs: Vec<(String, String)>) {
            let mut encoder = form_urlencoded::Serializer::new(String::new());
            let mut expected: HashMap<String, String> = HashMap::new();
            for (name, value) in &pairs {
                if expected.contains_key(name) {
                    continue;
                }
                encoder.append_pair(name, value);
                expected.insert(name.clone(), value.clone());
            }
            let form = Form::parse(&form_headers(), encoder.finish().as_bytes(), &[]).unwrap();
            for (name, value) in &expected {
                proptest::prop_assert_eq!(form.get(name), Some(value.as_str()));
            }
        }
    }
}
