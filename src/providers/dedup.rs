//! The dedup key a callback is stored under: the provider's key, scoped to
//! the tenant and hashed, led by the order's number where the key covers
//! it.
//!
//! Led by the order: the store's unique index on the key holds one order's
//! keys — and, where a shop numbers its orders in sequence, its orders'
//! keys — side by side, so that a batch of new callbacks touches a few
//! pages of the index instead of one page each (a hash alone put every key
//! at a random place: a page written to the WAL, copied back by the next
//! checkpoint and often read first, per callback; issue 14). The order's
//! number is taken only where the provider's key covers it, so two
//! callbacks still share a stored key exactly when they share the hash.

use sha2::{Digest, Sha256};

use super::{Parsed, Provider};
use crate::config::Tenant;

/// Longest order number a key is led by (Funpoint's are at most 20).
const MAX_LEAD: usize = 64;

/// The dedup key of a callback routed to `tenant`: dedup is per tenant
/// (SPEC §7), so a forged callback routed elsewhere cannot take a genuine
/// one's key.
pub fn tenant_dedup_key(provider: &dyn Provider, tenant: &Tenant, parsed: &Parsed) -> Option<String> {
    let key = provider.dedup_key(parsed)?;
    // `{tenant}\n{key}` hashed in three updates, not formatted first.
    let digest = Sha256::new().chain_update(tenant.id.as_str()).chain_update(b"\n").chain_update(&key).finalize();
    let hash = crate::domain::hex::lower(&digest);
    let order = provider.order_field().filter(|_| provider.dedup_covers_order()).and_then(|f| parsed.field(f));
    Some(led_by_order(order.as_deref(), hash))
}

/// `hash` led by `order`, ASCII-lowercased (Funpoint's key folds case), and
/// a newline, when `order` is 1–64 of `[A-Za-z0-9_-]`; else `hash` alone.
/// Store migration 8 gives the keys stored before it the same lead, by the
/// same rule.
pub fn led_by_order(order: Option<&str>, hash: String) -> String {
    match order.filter(|o| (1..=MAX_LEAD).contains(&o.len()) && o.bytes().all(plain)) {
        Some(order) => {
            let mut key = String::with_capacity(order.len() + 1 + hash.len());
            key.push_str(order);
            key.make_ascii_lowercase();
            key.push('\n');
            key.push_str(&hash);
            key
        }
        None => hash,
    }
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::routing::Provider as Kind;

    fn tenant(id: &str) -> Tenant {
        let text = format!(
            "[[tenants]]\nid = \"{id}\"\nbase_url = \"https://{id}.example\"\norder_suffix = \"01\"\n\
             [tenants.funpoint]\nverify = \"none\"\n[tenants.oen]\nmerchant_id = \"m\"\n[tenants.tappay]\n"
        );
        match crate::config::parse(&text, &|_| None) {
            Ok(c) => c.table.tenant(id).cloned().unwrap(),
            Err(e) => panic!("{e}"),
        }
    }

    fn key(kind: Kind, tenant_id: &str, body: &str) -> String {
        let provider = super::super::of(kind);
        let parsed = provider.parse(body.as_bytes(), None).unwrap();
        tenant_dedup_key(provider, &tenant(tenant_id), &parsed).unwrap()
    }

    fn funpoint(order: &str, rtn_msg: &str) -> String {
        let fields = [("MerchantID", "2000132"), ("MerchantTradeNo", order), ("RtnCode", "1"), ("RtnMsg", rtn_msg)];
        crate::form::encode(fields)
    }

    fn is_hash(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }

    #[test]
    fn a_funpoint_key_leads_with_its_order_and_a_resend_shares_it() {
        let first = key(Kind::Funpoint, "a", &funpoint("Ord-0042", "paid"));
        let (lead, hash) = first.split_once('\n').unwrap();
        assert_eq!(lead, "ord-0042");
        assert!(is_hash(hash), "{first}");
        assert_eq!(key(Kind::Funpoint, "a", &funpoint("ORD-0042", "resent")), first, "case and RtnMsg are folded");
        let elsewhere = key(Kind::Funpoint, "b", &funpoint("Ord-0042", "paid"));
        assert!(elsewhere.starts_with("ord-0042\n") && elsewhere != first, "per tenant");
        assert_ne!(key(Kind::Funpoint, "a", &funpoint("Ord-0043", "paid")), first);
    }

    #[test]
    fn the_stored_key_is_spelled_as_before() {
        // Keys are stored: a resend after an upgrade must find its original.
        let body = funpoint("Ord-0042", "paid");
        let provider = super::super::of(Kind::Funpoint);
        let parsed = provider.parse(body.as_bytes(), None).unwrap();
        let inner = provider.dedup_key(&parsed).unwrap();
        let before = crate::domain::hex::lower(&Sha256::digest(format!("a\n{inner}").as_bytes()));
        assert_eq!(key(Kind::Funpoint, "a", &body), format!("ord-0042\n{before}"));
    }

    #[test]
    fn a_key_not_covering_its_order_or_with_an_unplain_order_is_the_hash_alone() {
        // Oen's key leaves the order id out (a resend naming another order
        // is a conflict, found by its key).
        let oen =
            r#"{"merchantId":"m","id":"p1","purpose":"payment","status":"charged","success":true,"orderId":"o1"}"#;
        assert!(is_hash(&key(Kind::Oen, "a", oen)));
        let tappay = |order: &str| {
            let body = serde_json::json!({ "rec_trade_id": "D1", "status": 0, "order_number": order });
            key(Kind::TapPay, "a", &body.to_string())
        };
        assert!(tappay("A-7_01").starts_with("a-7_01\n"));
        // A hostile order number cannot shape the key: a newline (to pass
        // for another order's lead and hash), a long one, one not ASCII.
        let forged_lead = format!("a-7_01\n{}", "0".repeat(64));
        for order in ["has space01", "訂單01", &format!("{}01", "x".repeat(63)), "", &forged_lead] {
            assert!(is_hash(&tappay(order)), "{order:?}");
        }
    }

    proptest! {
        /// Two Funpoint callbacks share a stored key exactly when they share
        /// the hash it leads to.
        #[test]
        fn the_lead_follows_from_the_hash(a in "[a-cA-C0-9_ -]{0,6}", b in "[a-cA-C0-9_ -]{0,6}", msg in "[a-z]{1,4}") {
            let (ka, kb) = (key(Kind::Funpoint, "a", &funpoint(&a, "paid")), key(Kind::Funpoint, "a", &funpoint(&b, &msg)));
            let hash = |k: &str| k.rsplit('\n').next().unwrap_or_default().to_owned();
            prop_assert_eq!(ka == kb, hash(&ka) == hash(&kb));
        }
    }
}
