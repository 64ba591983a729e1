//! Funpoint (ECPay "AIO" compatible): form-encoded notifications signed with
//! CheckMacValue, routed by the MerchantTradeNo suffix, answered `1|OK`.

use http::StatusCode;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Parsed, Provider, Rejection};
use crate::config::{FunpointTenant, FunpointVerify, Tenant};
use crate::domain::CheckMac;
use crate::domain::checkmac::FIELD as CHECK_MAC;
use crate::domain::escape;
use crate::form::FormFields;
use crate::routing;

pub struct Funpoint;

/// Every field name Funpoint documents for its server notifications
/// (ReturnURL with NeedExtraPaidInfo, PaymentInfoURL, PeriodReturnURL) and
/// its browser returns. Spelling matters: the MAC folds case, tenants do not.
/// `gwsr`/`Gwsr` and `amount`/`Amount` are both documented.
const DOCUMENTED: &[&str] = &[
    "MerchantID",
    "MerchantTradeNo",
    "StoreID",
    "RtnCode",
    "RtnMsg",
    "TradeNo",
    "TradeAmt",
    "PaymentDate",
    "PaymentType",
    "PaymentTypeChargeFee",
    "TradeDate",
    "SimulatePaid",
    "CheckMacValue",
    "CustomField1",
    "CustomField2",
    "CustomField3",
    "CustomField4",
    "PlatformID",
    "ExpireDate",
    "BankCode",
    "vAccount",
    "PaymentNo",
    "Barcode1",
    "Barcode2",
    "Barcode3",
    "PayFrom",
    "ATMAccBank",
    "ATMAccNo",
    "WebATMAccBank",
    "WebATMAccNo",
    "WebATMBankName",
    "card4no",
    "card6no",
    "auth_code",
    "gwsr",
    "process_date",
    "amount",
    "stage",
    "stast",
    "staed",
    "eci",
    "red_dan",
    "red_de_amt",
    "red_ok_amt",
    "red_yet",
    "PeriodType",
    "Frequency",
    "ExecTimes",
    "PeriodAmount",
    "TotalSuccessTimes",
    "TotalSuccessAmount",
    "AlipayID",
    "AlipayTradeNo",
    "TenpayTradeNo",
    "Amount",
    "Gwsr",
    "ProcessDate",
    "AuthCode",
    "FirstAuthAmount",
];

/// A Funpoint body with one spelling per field (SPEC §7): no name twice,
/// no two names equal but for case, and no documented name spelt with
/// another case. `None`: not a form, not UTF-8, too many fields, or
/// respelled — refused either way.
pub fn canonical_form(body: &[u8]) -> Option<FormFields> {
    let fields = FormFields::parse(body).ok()?;
    if fields.respelled().is_some() {
        return None;
    }
    let respelt = |name: &str| !DOCUMENTED.contains(&name) && DOCUMENTED.iter().any(|d| d.eq_ignore_ascii_case(name));
    if fields.iter().any(|(name, _)| respelt(name)) {
        return None;
    }
    Some(fields)
}

/// SPEC §7: with `verify = "mac"` the CheckMacValue must verify with the
/// tenant's keys and algorithm (no keys: nothing verifies); `"none"` skips it.
pub fn check_mac(section: &FunpointTenant, fields: &FormFields) -> bool {
    match (section.verify, &section.keys) {
        (FunpointVerify::None, _) => true,
        (FunpointVerify::Mac, None) => false,
        (FunpointVerify::Mac, Some(keys)) => {
            fields.get(CHECK_MAC).is_some_and(|mac| CheckMac::verify(fields.unique(), keys, section.encrypt_type, mac))
        }
    }
}

/// SHA-256 (hex) of the fields but `RtnMsg` and the CheckMacValue, names and
/// values lowercased, sorted, form-encoded. Stored keys must match across
/// versions: the lowercased text goes into one buffer and the encoding
/// into another, hashed once, instead of a string per name and value and
/// one for the whole form (a tenth of notify's CPU), with the same bytes hashed.
fn dedup_key(form: Option<&FormFields>) -> String {
    let kept = || form.into_iter().flat_map(FormFields::iter).filter(|(k, _)| *k != "RtnMsg" && *k != CHECK_MAC);
    let mut text = String::with_capacity(kept().map(|(k, v)| k.len() + v.len()).sum());
    let mut fields: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::with_capacity(kept().count());
    for (k, v) in kept() {
        let mut lower = |s: &str| {
            let start = text.len();
            text.push_str(s);
            text[start..].make_ascii_lowercase();
            start..text.len()
        };
        let k = lower(k);
        let v = lower(v);
        fields.push((k, v));
    }
    let bytes = text.as_bytes();
    fields.sort_unstable_by(|(ak, av), (bk, bv)| {
        (&bytes[ak.clone()], &bytes[av.clone()]).cmp(&(&bytes[bk.clone()], &bytes[bv.clone()]))
    });
    // Joined by the separators `FORM` writes as `&` and `=` (bytes the
    // text, UTF-8, never has), encoded in one call, hashed once:
    // `form_urlencoded`'s bytes.
    let mut joined = Vec::with_capacity(text.len() + 2 * fields.len());
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            joined.push(escape::AMP);
        }
        joined.extend_from_slice(&bytes[k]);
        joined.push(escape::EQ);
        joined.extend_from_slice(&bytes[v]);
    }
    let mut encoded = Vec::with_capacity(3 * joined.len());
    escape::FORM.encode_into(&joined, &mut encoded);
    let hash = Sha256::digest(&encoded);
    crate::domain::hex::lower(&hash)
}

fn form(parsed: &Parsed) -> Option<&FormFields> {
    match parsed {
        Parsed::Form(f) => Some(f),
        Parsed::Json(_) => None,
    }
}

impl Provider for Funpoint {
    fn kind(&self) -> routing::Provider {
        routing::Provider::Funpoint
    }

    fn routing_key(&self) -> (&'static str, routing::KeyKind) {
        ("MerchantTradeNo", routing::KeyKind::OrderSuffix)
    }

    fn serves(&self, tenant: &Tenant) -> bool {
        tenant.funpoint.is_some()
    }

    fn find<'t>(&self, table: &'t crate::config::RoutingTable, key: &str) -> Option<&'t Tenant> {
        table.funpoint_by_order(key)
    }

    /// A form whatever the Content-Type says (Funpoint labels it text/html);
    /// it must be UTF-8, spell each field once, and carry a MerchantTradeNo.
    fn parse(&self, body: &[u8], _content_type: Option<&str>) -> Option<Parsed> {
        let fields = canonical_form(body)?;
        fields.get("MerchantTradeNo")?;
        Some(Parsed::Form(fields))
    }

    fn verify(&self, tenant: &Tenant, parsed: &Parsed) -> Result<(), Rejection> {
        let Some(section) = &tenant.funpoint else {
            return Ok(());
        };
        let Some(fields) = form(parsed) else {
            return Err(Rejection { message: "Bad Request" });
        };
        if !check_mac(section, fields) {
            return Err(Rejection { message: "CheckMacValue Error" });
        }
        if let Some(expected) = &section.merchant_id {
            let given = fields.get("MerchantID").unwrap_or_default();
            if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(Rejection { message: "MerchantID Error" });
            }
        }
        Ok(())
    }

    /// MerchantID plus every other field except RtnMsg and CheckMacValue:
    /// a resend changes RtnMsg (交易成功 → paid) and with it the MAC. Names
    /// and values are ASCII-lower-cased, as the MAC's input is: two bodies
    /// with one MAC have one key.
    /// PeriodReturnURL (no TradeNo, a TotalSuccessTimes) is a period; RtnCode
    /// 1 is paid; an ATM account or CVS code (RtnCode 2 / 10100073, or its
    /// fields) is issued; anything else failed.
    fn event(&self, parsed: &Parsed) -> &'static str {
        let rtn = parsed.field("RtnCode").unwrap_or_default();
        // The fields a paid notification lacks are looked for only when
        // they can decide (each look is a pass over the fields).
        let code = || {
            rtn == "2" || rtn == "10100073" || parsed.field("vAccount").is_some() || parsed.field("PaymentNo").is_some()
        };
        if parsed.field("TradeNo").is_none() && parsed.field("TotalSuccessTimes").is_some() {
            if rtn == "1" { "period_paid" } else { "failed" }
        } else if rtn == "1" {
            "paid"
        } else if code() {
            "code_issued"
        } else {
            "failed"
        }
    }

    fn order_field(&self) -> Option<&'static str> {
        Some("MerchantTradeNo")
    }

    /// The key covers every field but `RtnMsg` and `CheckMacValue`, case folded.
    fn dedup_covers_order(&self) -> bool {
        true
    }

    fn dedup_key(&self, parsed: &Parsed) -> Option<String> {
        Some(dedup_key(form(parsed)))
    }

    fn simulated(&self, parsed: &Parsed) -> bool {
        form(parsed).and_then(|f| f.get("SimulatePaid")) == Some("1")
    }

    fn ack(&self) -> (StatusCode, String) {
        (StatusCode::OK, "1|OK".to_owned())
    }

    fn error(&self, message: &str) -> String {
        format!("0|{message}")
    }

    fn answer_content_type(&self) -> &'static str {
        "text/plain; charset=utf-8"
    }

    fn notify_path<'t>(&self, tenant: &'t Tenant) -> Option<&'t str> {
        tenant.funpoint.as_ref().map(|f| f.notify_path.as_str())
    }

    /// SPEC 3.3: a form, whatever Funpoint labelled it.
    fn delivery_content_type(&self, _received: Option<&str>, _body: &[u8]) -> String {
        "application/x-www-form-urlencoded".to_owned()
    }

    /// 2xx and a body starting with `1|OK` after trimming whitespace.
    fn tenant_took_it(&self, status: StatusCode, body: &[u8]) -> bool {
        status.is_success() && body.trim_ascii_start().starts_with(b"1|OK")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Parsed {
        Funpoint.parse(body.as_bytes(), None).unwrap()
    }

    #[test]
    fn a_resend_with_another_rtnmsg_has_the_same_key() {
        let first = parsed(
            "MerchantID=1&MerchantTradeNo=A01&RtnCode=1&RtnMsg=%E4%BA%A4%E6%98%93%E6%88%90%E5%8A%9F&TradeNo=9&CheckMacValue=AA",
        );
        let resend = parsed("MerchantID=1&MerchantTradeNo=A01&RtnCode=1&RtnMsg=paid&TradeNo=9&CheckMacValue=BB");
        assert_eq!(Funpoint.dedup_key(&first), Funpoint.dedup_key(&resend));
        let other = parsed("MerchantID=1&MerchantTradeNo=A01&RtnCode=1&RtnMsg=paid&TradeNo=10&CheckMacValue=BB");
        assert_ne!(Funpoint.dedup_key(&first), Funpoint.dedup_key(&other));
        let other_merchant = parsed("MerchantID=2&MerchantTradeNo=A01&RtnCode=1&RtnMsg=paid&TradeNo=9");
        assert_ne!(Funpoint.dedup_key(&first), Funpoint.dedup_key(&other_merchant));
    }

    #[test]
    fn one_spelling_per_field() {
        assert!(Funpoint.parse(b"MerchantTradeNo=A01&RtnCode=1", None).is_some());
        assert!(Funpoint.parse(b"MerchantTradeNo=A01&MerchantTradeNo=B01", None).is_none());
        assert!(Funpoint.parse(b"MerchantTradeNo=A01&merchanttradeno=B01", None).is_none());
        assert!(Funpoint.parse(b"MerchantTradeNo=A01&simulatepaid=1", None).is_none());
        assert!(Funpoint.parse(b"MerchantTradeNo=A01&gwsr=1", None).is_some());
        assert!(Funpoint.parse(b"MerchantTradeNo=A01&Gwsr=1", None).is_some());
        assert!(Funpoint.parse(b"MerchantTradeNo=A01&GWSR=1", None).is_none());
        assert!(Funpoint.parse(b"MerchantTradeNo=A01&MyOwnField=1&myownfield2=2", None).is_some());
    }

    /// The key as every earlier version stored it.
    fn dedup_key_as_before(form: &FormFields) -> String {
        let mut fields: Vec<(String, String)> = form
            .iter()
            .filter(|(k, _)| *k != "RtnMsg" && *k != CHECK_MAC)
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_ascii_lowercase()))
            .collect();
        fields.sort_unstable();
        hex::encode(Sha256::digest(crate::form::encode(fields).as_bytes()))
    }

    proptest::proptest! {
        #[test]
        fn the_key_is_the_one_stored_before(fields in proptest::collection::vec((
            proptest::sample::select(vec!["MerchantID", "MerchantTradeNo", "RtnMsg", "CheckMacValue", "TradeAmt", "a b", "名"]),
            "[A-Za-z0-9 +&=%中_.-]{0,8}"), 0..10)) {
            let body = crate::form::encode(fields);
            let form = FormFields::parse(body.as_bytes()).unwrap();
            proptest::prop_assert_eq!(dedup_key(Some(&form)), dedup_key_as_before(&form));
        }
    }

    #[test]
    fn known_keys_are_unchanged() {
        assert_eq!(dedup_key(None), hex::encode(Sha256::digest(b"")));
        let form =
            FormFields::parse(b"MerchantID=1&MerchantTradeNo=A01&RtnCode=1&RtnMsg=paid&TradeNo=9&CheckMacValue=BB")
                .unwrap();
        assert_eq!(
            dedup_key(Some(&form)),
            hex::encode(Sha256::digest(b"merchantid=1&merchanttradeno=a01&rtncode=1&tradeno=9"))
        );
    }

    #[test]
    fn a_value_in_another_case_has_the_same_key() {
        let a = parsed("MerchantID=1&MerchantTradeNo=A01&PaymentType=Credit_CreditCard");
        let b = parsed("MerchantID=1&MerchantTradeNo=A01&PaymentType=credit_CreditCard");
        assert_eq!(Funpoint.dedup_key(&a), Funpoint.dedup_key(&b));
    }

    #[test]
    fn parse_needs_utf8_and_an_order_number() {
        assert!(Funpoint.parse(b"RtnCode=1", None).is_none());
        assert!(Funpoint.parse(b"MerchantTradeNo=%FF", None).is_none());
        assert!(Funpoint.parse(b"MerchantTradeNo=100%01", None).is_some());
    }

    #[test]
    fn tenant_success_needs_1_ok() {
        assert!(Funpoint.tenant_took_it(StatusCode::OK, b"  1|OK\n"));
        assert!(!Funpoint.tenant_took_it(StatusCode::OK, b"OK"));
        assert!(!Funpoint.tenant_took_it(StatusCode::INTERNAL_SERVER_ERROR, b"1|OK"));
    }
}
