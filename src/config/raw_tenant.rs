//! The `[[tenants]]` part of the serde mirror of routes.toml (see `raw.rs`).

use serde::Deserialize;

fn s(v: &str) -> String {
    v.to_owned()
}

#[derive(Debug, Deserialize)]
pub struct RawTenant {
    pub id: String,
    pub base_url: String,
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub domain_codes: Vec<String>,
    pub order_suffix: Option<String>,
    #[serde(default)]
    pub origins: Vec<String>,
    #[serde(default = "RawTenant::default_ack")]
    pub ack: String,
    pub forward_secret: Option<String>,
    #[serde(default)]
    pub drop_simulated: bool,
    pub funpoint: Option<RawTenantFunpoint>,
    pub oen: Option<RawTenantOen>,
    pub sinopac: Option<RawTenantSinopac>,
    pub tappay: Option<RawTenantTapPay>,
}

impl RawTenant {
    fn default_ack() -> String {
        s("stored")
    }
}

#[derive(Debug, Deserialize)]
pub struct RawTenantFunpoint {
    pub merchant_id: Option<String>,
    pub hash_key: Option<String>,
    pub hash_iv: Option<String>,
    /// `"mac"` (the default) or `"none"` (SPEC §7).
    #[serde(default = "RawTenantFunpoint::default_verify")]
    pub verify: String,
    /// 1: SHA-256 (the default), 0: MD5 (SPEC §7).
    #[serde(default = "RawTenantFunpoint::default_encrypt_type")]
    pub encrypt_type: u64,
    #[serde(default = "RawTenantFunpoint::default_api_path")]
    pub api_path: String,
    #[serde(default = "RawTenantFunpoint::default_notify_path")]
    pub notify_path: String,
    #[serde(default = "RawTenantFunpoint::default_result_path")]
    pub result_path: String,
}

impl RawTenantFunpoint {
    fn default_verify() -> String {
        s("mac")
    }
    fn default_encrypt_type() -> u64 {
        1
    }
    fn default_api_path() -> String {
        s("/funpoint_api.php?action=funpoint")
    }
    fn default_notify_path() -> String {
        s("/funpoint_r.php")
    }
    fn default_result_path() -> String {
        s("/funpoint_payok.php")
    }
}

#[derive(Debug, Deserialize)]
pub struct RawTenantOen {
    pub merchant_id: Option<String>,
    /// Oen's API token for this merchant's domain (SPEC §8).
    pub api_token: Option<String>,
    /// `"query"`, `"mark"` or `"none"`; the default depends on the token.
    pub verify: Option<String>,
    #[serde(default = "RawTenantOen::default_notify_path")]
    pub notify_path: String,
}

impl RawTenantOen {
    fn default_notify_path() -> String {
        s("/oen/notify")
    }
}

#[derive(Debug, Deserialize)]
pub struct RawTenantSinopac {
    pub shop_no: Option<String>,
    /// The four hash values SinoPac issues with the shop number.
    pub hash_a1: Option<String>,
    pub hash_a2: Option<String>,
    pub hash_b1: Option<String>,
    pub hash_b2: Option<String>,
    pub verify: Option<String>,
    #[serde(default = "RawTenantSinopac::default_notify_path")]
    pub notify_path: String,
    #[serde(default = "RawTenantSinopac::default_return_path")]
    pub return_path: String,
}

impl RawTenantSinopac {
    fn default_notify_path() -> String {
        s("/sinopac/notify")
    }
    fn default_return_path() -> String {
        s("/sinopac/return")
    }
}

#[derive(Debug, Deserialize)]
pub struct RawTenantTapPay {
    pub partner_key: Option<String>,
    pub merchant_id: Option<String>,
    pub verify: Option<String>,
    #[serde(default = "RawTenantTapPay::default_notify_path")]
    pub notify_path: String,
    #[serde(default = "RawTenantTapPay::default_return_path")]
    pub return_path: String,
}

impl RawTenantTapPay {
    fn default_notify_path() -> String {
        s("/tappay/notify")
    }
    fn default_return_path() -> String {
        s("/tappay/return")
    }
}
