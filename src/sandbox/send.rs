//! Sending as the providers send: a Funpoint notification is resent on the
//! sandbox's schedule until it is answered `1|OK` (changing `RtnMsg`, and so
//! the MAC, as Funpoint does); Oen retries a webhook twice within seconds;
//! TapPay and SinoPac send once. Every send and its answer goes to the log
//! shown on the sandbox page.

use std::sync::Arc;
use std::time::Duration;

use super::trades::{Fields, resent};
use super::{CALL_TIMEOUT, Sent, Shared};
use crate::domain::time::taipei;

/// Oen's documented behaviour: two retries within about six seconds.
const OEN_RETRIES: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(4)];

/// Posts `fields` (form-encoded) to `url` in the background; with `resend`,
/// again while the answer is not `1|OK` (a forger does not resend: the
/// resend is signed anew with the merchant's keys).
pub fn funpoint(shared: &Arc<Shared>, what: String, url: String, fields: Fields, resend: bool) {
    let shared2 = shared.clone();
    shared.tasks.spawn(async move {
        let shared = shared2;
        let mut fields = fields;
        let waits = if resend { shared.resend.clone() } else { Vec::new() };
        for (i, wait) in std::iter::once(Duration::ZERO).chain(waits).enumerate() {
            if i > 0 {
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                fields = resent(&fields, &shared.keys);
            }
            let label = if i == 0 { what.clone() } else { format!("{what} (resend {i})") };
            let body = crate::form::encode(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let request = shared
                .client
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .timeout(CALL_TIMEOUT)
                .body(body);
            let (ok, answer) = call(request, |status, body| status == 200 && body.trim().starts_with("1|OK")).await;
            shared.note(Sent { at: now(), what: label, to: url.clone(), answer });
            if ok {
                return;
            }
        }
    });
}

/// Posts a JSON webhook in the background (Oen: with its two retries).
pub fn webhook(shared: &Arc<Shared>, what: String, url: String, body: serde_json::Value, oen: bool) {
    let shared2 = shared.clone();
    shared.tasks.spawn(async move {
        let shared = shared2;
        let retries: &[Duration] = if oen { &OEN_RETRIES } else { &[] };
        for (i, wait) in std::iter::once(&Duration::ZERO).chain(retries).enumerate() {
            if i > 0 {
                tokio::select! {
                    () = shared.stop.cancelled() => return,
                    () = tokio::time::sleep(*wait) => {}
                }
            }
            let request = shared.client.post(&url).json(&body).timeout(CALL_TIMEOUT);
            let (ok, answer) = call(request, |status, _| (200..300).contains(&status)).await;
            let label = if i == 0 { what.clone() } else { format!("{what} (retry {i})") };
            shared.note(Sent { at: now(), what: label, to: url.clone(), answer });
            if ok {
                return;
            }
        }
    });
}

/// Sends; says whether `success` holds and what came back, in one line.
async fn call(request: reqwest::RequestBuilder, success: impl Fn(u16, &str) -> bool) -> (bool, String) {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            let excerpt: String = body.trim().chars().take(120).collect();
            (success(status, &body), format!("{status} {excerpt}"))
        }
        Err(e) if e.is_timeout() => (false, "no answer: timed out".into()),
        Err(e) if e.is_connect() => (false, "no answer: cannot connect".into()),
        Err(e) => (false, format!("no answer: {}", e.without_url())),
    }
}

fn now() -> String {
    taipei(crate::store::now_ms())
}
