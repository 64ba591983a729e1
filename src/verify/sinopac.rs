//! SinoPac's OrderPayQuery (providers-query.md, appendix): the notice is
//! only `ShopNo` and a `PayToken`, so the query is the payment's only
//! proof. Two round trips: `POST {base}Nonce` for a one-time nonce, then
//! `POST {base}Order` with the envelope — the request AES-256-CBC
//! encrypted with the tenant's HashID and a nonce-derived IV, signed with
//! SHA-256 — whose answer is decrypted and its signature checked the same
//! way before anything in it is believed.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut as _, BlockEncryptMut as _, KeyIvInit as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Verdict, claimed, send};
use crate::config::{ProviderApi, Tenant};
use crate::providers::Parsed;

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// The envelope's crypto, for one HashID.
pub mod envelope {
    use super::*;

    /// The IV: the last 16 characters of the uppercase hex SHA-256 of the
    /// nonce, as ASCII bytes.
    fn iv(nonce: &str) -> [u8; 16] {
        let hex = hex::encode_upper(Sha256::digest(nonce.as_bytes()));
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&hex.as_bytes()[hex.len() - 16..]);
        iv
    }

    /// `plain` encrypted (AES-256-CBC, PKCS#7; the 32 ASCII bytes of the
    /// HashID the key), as uppercase hex.
    pub fn encrypt(hash_id: &str, nonce: &str, plain: &[u8]) -> Option<String> {
        let cipher = Encryptor::new_from_slices(hash_id.as_bytes(), &iv(nonce)).ok()?;
        Some(hex::encode_upper(cipher.encrypt_padded_vec_mut::<Pkcs7>(plain)))
    }

    pub fn decrypt(hash_id: &str, nonce: &str, hex_text: &str) -> Option<Vec<u8>> {
        let bytes = hex::decode(hex_text).ok()?;
        let cipher = Decryptor::new_from_slices(hash_id.as_bytes(), &iv(nonce)).ok()?;
        cipher.decrypt_padded_vec_mut::<Pkcs7>(&bytes).ok()
    }

    /// The Sign of a message: its top-level scalar, non-empty fields sorted
    /// by key as `k=v&…`, then the nonce and the HashID; SHA-256, uppercase hex.
    pub fn sign(message: &Value, nonce: &str, hash_id: &str) -> String {
        let mut pairs: Vec<(&str, String)> = message
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| match v {
                        Value::String(s) if !s.is_empty() => Some((k.as_str(), s.clone())),
                        Value::Number(n) => Some((k.as_str(), n.to_string())),
                        Value::Bool(b) => Some((k.as_str(), b.to_string())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        let joined: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        hex::encode_upper(Sha256::digest(format!("{}{nonce}{hash_id}", joined.join("&")).as_bytes()))
    }
}

pub(super) async fn query(client: &reqwest::Client, api: &ProviderApi, tenant: &Tenant, parsed: &Parsed) -> Verdict {
    let Some(hash_id) = tenant.sinopac.as_ref().and_then(|s| s.keys.as_ref()).map(|k| k.hash_id.expose()) else {
        return Verdict::unavailable("the tenant has no SinoPac hash values");
    };
    let (shop, token) = match (claimed(parsed, "ShopNo"), claimed(parsed, "PayToken")) {
        (Ok(s), Ok(t)) => (s, t),
        (Err(v), _) | (_, Err(v)) => return v,
    };
    let nonce = match nonce(client, api, &shop).await {
        Ok(n) => n,
        Err(v) => return v,
    };
    let message = json!({ "ShopNo": shop.as_ref(), "PayToken": token.as_ref() });
    let Some(sealed) = envelope::encrypt(hash_id, &nonce, message.to_string().as_bytes()) else {
        return Verdict::unavailable("the HashID is not an AES-256 key");
    };
    let request = json!({
        "Version": "1.0.0",
        "ShopNo": shop.as_ref(),
        "APIService": "OrderPayQuery",
        "Sign": envelope::sign(&message, &nonce, hash_id),
        "Nonce": nonce,
        "Message": sealed,
    });
    let answer = match send(client.post(format!("{}Order", api.base)).json(&request), api).await {
        Ok(a) if a.status.is_success() => a,
        Ok(a) => return Verdict::unavailable(format!("HTTP {}", a.status.as_u16())).saying(&a.body),
        Err(v) => return v,
    };
    let Some(result) = open(&answer.body, hash_id) else {
        return Verdict::unavailable("the answer does not decrypt, or its Sign does not check").saying(&answer.body);
    };
    judge(&shop, &result).saying(result.to_string().as_bytes())
}

async fn nonce(client: &reqwest::Client, api: &ProviderApi, shop: &str) -> Result<String, Verdict> {
    let answer = send(client.post(format!("{}Nonce", api.base)).json(&json!({ "ShopNo": shop })), api).await?;
    let json: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    match json.get("Nonce").and_then(Value::as_str) {
        Some(n) if answer.status.is_success() && !n.is_empty() => Ok(n.to_owned()),
        _ => Err(Verdict::unavailable(format!("no nonce (HTTP {})", answer.status.as_u16())).saying(&answer.body)),
    }
}

/// The decrypted result of an Order answer whose Sign checks.
fn open(body: &[u8], hash_id: &str) -> Option<Value> {
    let outer: Value = serde_json::from_slice(body).ok()?;
    let nonce = outer.get("Nonce")?.as_str()?;
    let plain = envelope::decrypt(hash_id, nonce, outer.get("Message")?.as_str()?)?;
    let result: Value = serde_json::from_slice(&plain).ok()?;
    let sign = outer.get("Sign")?.as_str()?;
    envelope::sign(&result, nonce, hash_id).eq_ignore_ascii_case(sign).then_some(result)
}

fn judge(shop: &str, result: &Value) -> Verdict {
    let get = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    if get(result, "Status") != "S" {
        return Verdict::not_yet(format!(
            "the bank does not confirm this PayToken (Status {:?})",
            get(result, "Status")
        ));
    }
    let Some(ts) = result.get("TSResultContent") else { return Verdict::not_yet("no TSResultContent yet") };
    if get(ts, "ShopNo") != shop {
        return Verdict::contradicted("the result is another shop's");
    }
    match get(ts, "Status").as_str() {
        "S" => Verdict::confirmed(format!("paid: order {}, amount {} (×100)", get(ts, "OrderNo"), get(ts, "Amount"))),
        "F" => Verdict::contradicted(format!("the payment failed: {}", get(ts, "Description"))),
        other => Verdict::not_yet(format!("payment status {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::envelope::*;
    use serde_json::json;

    const HASH_ID: &str = "17D8E6558DC60E702A6B57E1B9B7060D";

    #[test]
    fn the_envelope_round_trips_and_its_sign_drops_nested_and_empty_fields() {
        let sealed = encrypt(HASH_ID, "N0NCE", br#"{"ShopNo":"NA0249_001"}"#).unwrap();
        assert!(sealed.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()));
        assert_eq!(decrypt(HASH_ID, "N0NCE", &sealed).unwrap(), br#"{"ShopNo":"NA0249_001"}"#);
        assert_ne!(decrypt(HASH_ID, "OTHER", &sealed).as_deref(), Some(&br#"{"ShopNo":"NA0249_001"}"#[..]));
        let a = sign(&json!({"b": "2", "a": "1", "empty": "", "nested": {"x": 1}}), "N", HASH_ID);
        let b = sign(&json!({"a": "1", "b": "2"}), "N", HASH_ID);
        assert_eq!(a, b);
        assert_ne!(a, sign(&json!({"a": "1", "b": "3"}), "N", HASH_ID));
    }
}
