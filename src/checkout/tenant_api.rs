//! The two outbound calls of a checkout: the tenant's API, which answers
//! the signed payment form, and (for CVS) the server-side post of that form
//! to the payment provider. Both are bounded in time and size.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::domain::Origin;
use crate::outbound::{Failure, Outbound, Post};

/// Larger answers from a tenant API or a payment provider are refused.
const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TenantApiError {
    #[error("unreachable: {0}")]
    Unreachable(#[source] Failure),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("answer larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("answer is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("answer has no string payment_url")]
    NoPaymentUrl,
    #[error("answer has no object payment_value")]
    NoPaymentValue,
    #[error("payment_url is not an absolute http(s) URL")]
    BadPaymentUrl,
}

/// The tenant's signed payment form.
#[derive(Debug)]
pub struct PaymentRequest {
    pub payment_url: Url,
    pub payment_origin: Origin,
    /// `payment_value` byte for byte as the tenant sent it, when asked for
    /// (`checkout.json` answers it; the page needs only the fields).
    pub raw_value: Option<Box<RawValue>>,
    /// `payment_value`'s entries in the tenant's order, as form values.
    pub fields: super::payment_value::Fields,
}

impl PaymentRequest {
    pub fn choose_payment(&self) -> Option<&str> {
        self.fields.get("ChoosePayment")
    }

    pub fn field_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter()
    }

    /// Parses a tenant API answer: a JSON object with a string `payment_url`
    /// and an object `payment_value`; anything else in it is ignored. With
    /// `keep_raw`, `payment_value`'s bytes are kept as well (a second pass
    /// over them); without, its fields are read in the one pass.
    pub fn from_json(body: &[u8], keep_raw: bool) -> Result<Self, TenantApiError> {
        #[derive(Deserialize)]
        struct Answer {
            payment_url: Option<Value>,
            #[serde(default, deserialize_with = "super::payment_value::object_fields")]
            payment_value: Option<super::payment_value::Fields>,
        }
        #[derive(Deserialize)]
        struct RawAnswer {
            payment_url: Option<Value>,
            payment_value: Option<Box<RawValue>>,
        }
        let (url, fields, raw_value) = if keep_raw {
            let answer: RawAnswer = json(body)?;
            let fields = answer.payment_value.as_deref().and_then(super::payment_value::fields);
            (answer.payment_url, fields, answer.payment_value)
        } else {
            let answer: Answer = json(body)?;
            (answer.payment_url, answer.payment_value, None)
        };
        let Some(Value::String(url)) = url else {
            return Err(TenantApiError::NoPaymentUrl);
        };
        let fields = fields.ok_or(TenantApiError::NoPaymentValue)?;
        let (payment_url, payment_origin) = payment_url(&url).ok_or(TenantApiError::BadPaymentUrl)?;
        Ok(Self { payment_url, payment_origin, raw_value, fields })
    }
}

/// `body` as JSON: checked as UTF-8 once, in one pass, then read as text.
/// Read as bytes, serde_json checked each string and each raw value on its
/// own (~3k instructions a checkout, issue 14). Bytes that are not UTF-8
/// are read as bytes, for the same error as before.
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, TenantApiError> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
    .map_err(TenantApiError::NotJson)
}

/// The last few payment URLs each thread parsed, by their text.
const KEPT_URLS: usize = 8;
/// Longer payment URLs are parsed each time.
const KEPT_URL_BYTES: usize = 512;

thread_local! {
    static RECENT_URLS: RefCell<VecDeque<(Box<str>, Url, Origin)>> = const { RefCell::new(VecDeque::new()) };
}

/// `text` as an absolute http(s) URL, with its origin. Parsing (WHATWG,
/// IDNA) and serialising the origin was a sixteenth of a checkout's
/// instructions (issue 14) for what a tenant answers nearly always the same
/// few strings, so each thread keeps the last [`KEPT_URLS`] it parsed; the
/// same text always parses the same way.
fn payment_url(text: &str) -> Option<(Url, Origin)> {
    let kept = RECENT_URLS
        .with_borrow(|r| r.iter().find(|(t, ..)| **t == *text).map(|(_, url, origin)| (url.clone(), origin.clone())));
    if kept.is_some() {
        return kept;
    }
    let url = Url::parse(text).ok().filter(|u| matches!(u.scheme(), "http" | "https"))?;
    let origin = Origin::of_url(&url)?;
    if text.len() <= KEPT_URL_BYTES {
        RECENT_URLS.with_borrow_mut(|r| {
            if r.len() == KEPT_URLS {
                r.pop_front();
            }
            r.push_back((text.into(), url.clone(), origin.clone()));
        });
    }
    Some((url, origin))
}

/// POSTs the five checkout fields (`form_body`, encoded) to the tenant's API and parses its answer.
pub async fn request_payment(
    client: &Outbound,
    url: &str,
    form_body: String,
    forwarded_for: &str,
    timeout: Duration,
    keep_raw: bool,
) -> Result<PaymentRequest, TenantApiError> {
    let mut headers = form_headers();
    headers.insert(http::header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(forwarded_for) {
        headers.insert("x-forwarded-for", v);
    }
    let answer = bounded(client, url, headers, form_body.into(), timeout).await?;
    if !answer.status.is_success() {
        return Err(TenantApiError::Status(answer.status.as_u16()));
    }
    PaymentRequest::from_json(&answer.body, keep_raw)
}

/// What a remote answered, read whole (and bounded).
pub struct Answer {
    pub status: http::StatusCode,
    pub content_type: Option<HeaderValue>,
    pub location: Option<HeaderValue>,
    pub body: Bytes,
}

/// CVS: posts the payment form to the provider server-side.
pub async fn post_cvs(
    client: &Outbound,
    payment: &PaymentRequest,
    timeout: Duration,
) -> Result<Answer, TenantApiError> {
    let body = crate::form::encode(payment.field_pairs());
    bounded(client, payment.payment_url.as_str(), form_headers(), body.into(), timeout).await
}

fn form_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::with_capacity(4);
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    headers
}

/// Sends, then reads the answer; one larger than [`MAX_ANSWER_BYTES`] is refused.
async fn bounded(
    client: &Outbound,
    url: &str,
    headers: http::HeaderMap,
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, TenantApiError> {
    let reply =
        client.post(Post { url, headers, body, timeout, limit: MAX_ANSWER_BYTES }).await.map_err(|e| match e {
            Failure::Timeout(_) => TenantApiError::Timeout(timeout),
            other => TenantApiError::Unreachable(other),
        })?;
    if reply.cut {
        return Err(TenantApiError::TooLarge);
    }
    let header = |name| reply.headers.get(name).cloned();
    let (content_type, location) = (header(http::header::CONTENT_TYPE), header(http::header::LOCATION));
    Ok(Answer { status: reply.status, content_type, location, body: reply.body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_number_text() {
        let body = br#"{"payment_url":"https://payment-stage.funpoint.com.tw/Cashier/AioCheckOut/V5",
            "payment_value":{"Z":"1","TotalAmount":100,"A":1.50,"B":true,"C":null,"D":"\u4ea4"}}"#;
        for keep_raw in [true, false] {
            let p = PaymentRequest::from_json(body, keep_raw).unwrap();
            let got: Vec<_> = p.field_pairs().collect();
            let want = [("Z", "1"), ("TotalAmount", "100"), ("A", "1.50"), ("B", "true"), ("C", ""), ("D", "交")];
            assert_eq!(got, want, "keep_raw {keep_raw}");
            assert_eq!(p.payment_origin.as_str(), "https://payment-stage.funpoint.com.tw");
            let raw = p.raw_value.as_ref().map(|r| r.get());
            let want = r#"{"Z":"1","TotalAmount":100,"A":1.50,"B":true,"C":null,"D":"\u4ea4"}"#;
            assert_eq!(raw, keep_raw.then_some(want));
        }
    }

    #[test]
    fn refuses_incomplete_answers() {
        for keep_raw in [true, false] {
            let err = |b: &str| PaymentRequest::from_json(b.as_bytes(), keep_raw).unwrap_err().to_string();
            assert!(err("not json").contains("not JSON"));
            assert!(PaymentRequest::from_json(b"[]", keep_raw).is_err());
            assert!(err(r#"{"payment_value":{}}"#).contains("payment_url"));
            assert!(err(r#"{"payment_url":5,"payment_value":{}}"#).contains("payment_url"));
            assert!(err(r#"{"payment_url":"https://x.tw"}"#).contains("payment_value"));
            for not_object in ["[1,[2,{}]]", "null", "\"x\"", "1.5", "-1", "7", "true"] {
                let answer =
                    format!(r#"{{"payment_url":"https://x.tw","payment_value":{not_object},"after":{{"a":[1]}}}}"#);
                assert!(err(&answer).contains("payment_value"), "{answer}: {}", err(&answer));
            }
            assert!(err(r#"{"payment_url":"javascript:alert(1)","payment_value":{}}"#).contains("payment_url"));
            assert!(err(r#"{"payment_url":"/relative","payment_value":{}}"#).contains("payment_url"));
        }
    }

    /// Read as text once checked as UTF-8: raw UTF-8 in names and values
    /// comes through as it was sent; bytes that are not UTF-8 (in a string,
    /// or outside one) are refused as not JSON, with serde_json's own error.
    #[test]
    fn utf8_is_checked_once_and_what_is_not_utf8_is_refused() {
        let url = "https://payment-stage.funpoint.com.tw/Cashier/AioCheckOut/V5";
        let body = format!(r#"{{"payment_url":"{url}","payment_value":{{"ItemName":"商品 #1","名":"值\n"}}}}"#);
        for keep_raw in [true, false] {
            let p = PaymentRequest::from_json(body.as_bytes(), keep_raw).unwrap();
            assert_eq!(p.field_pairs().collect::<Vec<_>>(), [("ItemName", "商品 #1"), ("名", "值\n")]);
            let bad_value =
                [br#"{"payment_url":"https://x.tw","payment_value":{"a":""#.as_slice(), b"\xff\xfe\"}}"].concat();
            let bad_outside = [body.as_bytes(), b"\xff"].concat();
            for bad in [bad_value, bad_outside] {
                let err = PaymentRequest::from_json(&bad, keep_raw).unwrap_err();
                assert!(matches!(err, TenantApiError::NotJson(_)), "{err}");
                assert_eq!(
                    err.to_string(),
                    TenantApiError::NotJson(serde_json::from_slice::<Value>(&bad).unwrap_err()).to_string()
                );
            }
        }
    }

    /// A hostile tenant API's answer (capped at 1 MiB) read in the one pass
    /// as in two: nesting past serde_json's limit is refused, not a stack
    /// overflow; a hundred thousand entries with repeated names are read in
    /// bounded work; either way the same result.
    #[test]
    fn a_hostile_answer_is_refused_or_read_in_bounded_work_in_either_pass() {
        let url = "https://payment-stage.funpoint.com.tw/Cashier/AioCheckOut/V5";
        let deep = format!(
            r#"{{"payment_url":"{url}","payment_value":{{"a":{}1{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let entries: Vec<String> = (0..100_000).map(|i| format!("\"k{}\":{i}", i % 50_000)).collect();
        let wide = format!(r#"{{"payment_url":"{url}","payment_value":{{{}}}}}"#, entries.join(","));
        for keep_raw in [true, false] {
            assert!(PaymentRequest::from_json(deep.as_bytes(), keep_raw).is_err(), "keep_raw {keep_raw}");
            let p = PaymentRequest::from_json(wide.as_bytes(), keep_raw).unwrap();
            assert_eq!((p.fields.len(), p.fields.get("k7")), (50_000, Some("50007")), "keep_raw {keep_raw}");
        }
    }

    /// Kept or not, a URL reads as a fresh parse reads it: cycling through
    /// more URLs than are kept, each twice over, refused ones included.
    #[test]
    fn payment_urls_read_the_same_kept_or_not() {
        let texts: Vec<String> = (0..2 * KEPT_URLS)
            .map(|i| match i % 4 {
                0 => format!("https://P{i}.Example.tw:443/Cashier/AioCheckOut/V5?a={i}"),
                1 => format!("http://127.0.0.1:{}/a/../b/{i}", 18000 + i),
                2 => format!("https://xn--fiqs8s{i}.tw/\u{4ea4}%20 /{i}"),
                _ => format!("ftp://host{i}.tw/"),
            })
            .collect();
        for _ in 0..3 {
            for t in &texts {
                let fresh = Url::parse(t).ok().filter(|u| u.scheme().starts_with("http"));
                let fresh = fresh.map(|u| (u.to_string(), Origin::of_url(&u).unwrap().to_string()));
                let got = payment_url(t).map(|(u, o)| (u.to_string(), o.to_string()));
                assert_eq!(got, fresh, "{t}");
            }
        }
        assert_eq!(payment_url("https://a.tw/x").unwrap().1.as_str(), "https://a.tw");
        assert_eq!(payment_url("https://b.tw/x").unwrap().1.as_str(), "https://b.tw");
        assert_eq!(payment_url("https://a.tw/x").unwrap().0.as_str(), "https://a.tw/x");
    }
}
