//! Every validation rule of SPEC §2, each failing with the tenant and field named.

use super::{AckMode, Config, StorageUrl, parse};

fn env(name: &str) -> Option<String> {
    match name {
        "PAYGO_HASH_KEY" => Some("265flDjIvesceXWM".into()),
        "PAYGO_HASH_IV" => Some("pOOvhGd1V2pJbjfX".into()),
        _ => None,
    }
}

fn ok(text: &str) -> Config {
    match parse(text, &env) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn problems(text: &str) -> Vec<String> {
    match parse(text, &env) {
        Ok(_) => panic!("expected problems, the config passed"),
        Err(e) => e.problems(),
    }
}

fn assert_problem(text: &str, needles: &[&str]) {
    let all = problems(text);
    assert!(
        all.iter().any(|p| needles.iter().all(|n| p.contains(n))),
        "no problem mentions all of {needles:?}; got:\n{}",
        all.join("\n")
    );
}

const TENANT: &str = r#"
[[tenants]]
id = "paygo"
base_url = "https://paygo.tw"
domain_codes = ["paygo"]
order_suffix = "01"
[tenants.funpoint]
"#;

#[test]
fn the_repository_routes_toml_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.toml")).unwrap();
    let config = parse(&text, &|_| None).unwrap();
    let ids: Vec<&str> = config.table.tenants().iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["paygo", "ezpay", "ro", "tt-paygo", "test-paygo"]);
    for (code, suffix, host) in [
        ("paygo", "01", "https://paygo.tw"),
        ("ezpay", "02", "https://ezpay.mobi"),
        ("ro", "03", "https://ro.paygo.tw"),
        ("tt.paygo", "04", "https://tt.paygo.tw"),
        ("test.paygo", "05", "https://test.paygo.tw"),
    ] {
        let t = config.table.by_domain_code(code).unwrap();
        assert_eq!(t.order_suffix.as_deref(), Some(suffix));
        assert_eq!(t.base_url.as_str(), host);
        assert_eq!(config.table.funpoint_by_order(&format!("FP2411{suffix}")).unwrap().id, t.id);
    }
    // Without the key variables set, no tenant verifies, and admin is off.
    assert!(config.table.tenants().iter().all(|t| t.funpoint.as_ref().unwrap().keys.is_none()));
    assert!(config.admin.token.is_none());
}

#[test]
fn defaults_match_the_spec() {
    let c = ok(TENANT);
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.max_body_bytes, 65536);
    assert_eq!(c.server.request_timeout.as_secs(), 15);
    assert!(c.server.legacy_paths);
    assert!(matches!(&c.storage.url, StorageUrl::Sqlite { path } if path.to_str() == Some("data/payrelay.db")));
    assert_eq!(c.storage.retention.as_secs(), 90 * 86400);
    assert_eq!(c.storage.keep_rejected, 10000);
    assert_eq!(c.storage.lease.as_secs(), 30);
    assert_eq!(c.delivery.timeout.as_secs(), 10);
    let retry: Vec<u64> = c.delivery.retry.iter().map(|d| d.as_secs()).collect();
    assert_eq!(retry, [10, 60, 300, 1800, 7200, 21600, 43200, 86400]);
    assert_eq!(c.delivery.dedup_window.as_secs(), 7 * 86400);
    assert_eq!(c.delivery.inline_timeout.as_secs(), 5);
    assert!(c.admin.token.is_none());
    let origins: Vec<&str> = c.table.funpoint.payment_origins.iter().map(|o| o.as_str()).collect();
    assert_eq!(origins, ["https://payment.funpoint.com.tw", "https://payment-stage.funpoint.com.tw"]);
    let t = c.table.tenant("paygo").unwrap();
    assert_eq!(t.ack, AckMode::Stored);
    assert!(!t.drop_simulated && t.origins.is_empty() && t.forward_secret.is_none());
    let f = t.funpoint.as_ref().unwrap();
    assert_eq!(f.api_path, "/funpoint_api.php?action=funpoint");
    assert_eq!(f.notify_path, "/funpoint_r.php");
    assert_eq!(f.result_path, "/funpoint_payok.php");
    assert!(f.keys.is_none() && f.merchant_id.is_none());
}

#[test]
fn env_variables_are_substituted_and_missing_ones_named() {
    let c = ok(&format!("{TENANT}hash_key = \"${{PAYGO_HASH_KEY}}\"\nhash_iv = \"${{PAYGO_HASH_IV}}\"\n"));
    let keys = c.table.tenant("paygo").unwrap().funpoint.as_ref().unwrap().keys.clone().unwrap();
    assert_eq!(keys.key.expose(), "265flDjIvesceXWM");
    assert_problem(&format!("{TENANT}hash_key = \"${{NOPE_KEY}}\"\nhash_iv = \"x\"\n"), &["NOPE_KEY", "hash_key"]);
    let c = ok(&format!("[admin]\ntoken = \"${{NOPE:-}}\"\n{TENANT}"));
    assert!(c.admin.token.is_none());
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[server]
listen = "nowhere"
request_timeout = "soon"
[[tenants]]
id = "a"
base_url = "http://a.tw"
domain_codes = ["x"]
forward_secret = "nope"
[[tenants]]
id = "b"
base_url = "ftp://b.tw"
domain_codes = ["x"]
[tenants.funpoint]
hash_key = "k"
hash_kye = "typo"
"#;
    let all = problems(text);
    assert!(all.len() >= 7, "{all:#?}");
    for needle in [
        "server.listen",
        "request_timeout",
        "\"a\": base_url",
        "forward_secret",
        "\"b\": base_url",
        "both claim domain code \"x\"",
        "hash_iv",
        "hash_kye",
    ] {
        assert!(all.iter().any(|p| p.contains(needle)), "nothing about {needle:?} in {all:#?}");
    }
}

#[test]
fn duplicates_are_refused_naming_both_tenants() {
    let two = |a: &str, b: &str| {
        format!(
            "[[tenants]]\nid = \"one\"\nbase_url = \"https://one.tw\"\n{a}\n[[tenants]]\nid = \"two\"\nbase_url = \"https://two.tw\"\n{b}\n"
        )
    };
    assert_problem(&two("domain_codes = [\"x\"]", "domain_codes = [\"y\", \"x\"]"), &["one", "two", "domain code"]);
    assert_problem(&two("order_suffix = \"01\"", "order_suffix = \"01\""), &["one", "two", "order suffix"]);
    assert_problem(
        &two("[tenants.oen]\nmerchant_id = \"m\"", "[tenants.oen]\nmerchant_id = \"m\""),
        &["one", "two", "oen"],
    );
    assert_problem(
        &two("[tenants.sinopac]\nshop_no = \"S1\"", "[tenants.sinopac]\nshop_no = \"S1\""),
        &["one", "two", "shop_no"],
    );
    // Funpoint's merchant_id only checks: tenants may share it.
    ok(&two("[tenants.funpoint]\nmerchant_id = \"1000031\"", "[tenants.funpoint]\nmerchant_id = \"1000031\""));
    let dup_id = "[[tenants]]\nid = \"one\"\nbase_url = \"https://one.tw\"\n[[tenants]]\nid = \"one\"\nbase_url = \"https://two.tw\"\n";
    assert_problem(dup_id, &["\"one\"", "more than one"]);
}

#[test]
fn suffix_length_must_match_each_provider_the_tenant_takes() {
    let t = |suffix: &str, section: &str| {
        format!("[[tenants]]\nid = \"a\"\nbase_url = \"https://a.tw\"\norder_suffix = \"{suffix}\"\n{section}\n")
    };
    assert_problem(&t("001", "[tenants.funpoint]"), &["\"a\"", "order_suffix", "funpoint"]);
    assert_problem(&t("1", "[tenants.tappay]"), &["\"a\"", "order_suffix", "tappay"]);
    // No provider section with a suffix length: nothing to compare with.
    ok(&t("001", "[tenants.oen]"));
    ok(&format!("[providers.funpoint]\norder_suffix_len = 3\n{}", t("001", "[tenants.funpoint]")));
}

#[test]
fn base_url_rules() {
    let t = |url: &str, extra: &str| format!("[[tenants]]\nid = \"a\"\nbase_url = \"{url}\"\n{extra}\n");
    assert_problem(&t("http://a.tw", ""), &["\"a\"", "base_url", "allow_http"]);
    ok(&t("http://127.0.0.1:9000", "allow_http = true"));
    assert_problem(&t("a.tw", ""), &["base_url", "absolute"]);
    assert_problem(&t("/relative", ""), &["base_url"]);
    assert_problem(&t("ftp://a.tw", "allow_http = true"), &["base_url"]);
    let c = ok(&t("https://a.tw/shop/", ""));
    assert_eq!(c.table.tenant("a").unwrap().base_url.join("/x.php"), "https://a.tw/shop/x.php");
}

#[test]
fn hash_keys_come_in_pairs_and_secrets_stay_hidden() {
    assert_problem(&format!("{TENANT}hash_key = \"k\"\n"), &["\"paygo\"", "hash_iv"]);
    assert_problem(&format!("{TENANT}hash_iv = \"v\"\n"), &["\"paygo\"", "hash_key"]);
    let text = format!("{TENANT}hash_key = \"265flDjIvesceXWM\"\nhash_iv = \"pOOvhGd1V2pJbjfX\"\n");
    let c = ok(&text);
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("265flDjIvesceXWM") && !dbg.contains("pOOvhGd1V2pJbjfX"), "Debug leaks a key");
}

#[test]
fn forward_secret_must_be_whsec_base64() {
    let t = |s: &str| format!("[[tenants]]\nid = \"a\"\nbase_url = \"https://a.tw\"\nforward_secret = \"{s}\"\n");
    ok(&t("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    assert_problem(&t("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), &["\"a\"", "forward_secret", "whsec_"]);
    let all = problems(&t("whsec_%%%secretvalue"));
    assert!(all.iter().any(|p| p.contains("forward_secret")));
    assert!(all.iter().all(|p| !p.contains("secretvalue")), "the secret is echoed: {all:?}");
}

#[test]
fn unknown_keys_anywhere_are_refused() {
    assert_problem("[server]\nlisten_addr = \"x\"\n", &["server.listen_addr", "unknown key"]);
    assert_problem("[serverr]\n", &["serverr", "unknown key"]);
    assert_problem(&format!("{TENANT}hash_kye = \"k\"\n"), &["tenant \"paygo\"", "funpoint.hash_kye"]);
    assert_problem("[providers.funpoint]\norder_suffix_length = 2\n", &["order_suffix_length"]);
    assert_problem(
        "[[tenants]]\nid = \"a\"\nbase_url = \"https://a.tw\"\ndomain = \"a\"\n",
        &["tenant \"a\"", "domain"],
    );
}

#[test]
fn other_values_are_checked() {
    assert_problem("[delivery]\nretry = [\"10s\", \"1 minute\"]\n", &["delivery.retry[1]"]);
    assert_problem("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy\"]\n", &["trusted_proxies[1]"]);
    assert_problem("[storage]\nurl = \"mysql://x\"\n", &["storage.url"]);
    assert_problem("[providers.funpoint]\npayment_origins = [\"https://p.tw/path\"]\n", &["payment_origins[0]"]);
    assert_problem("[[tenants]]\nid = \"Bad.Id\"\nbase_url = \"https://a.tw\"\n", &["id"]);
    assert_problem("[[tenants]]\nid = \"a\"\nbase_url = \"https://a.tw\"\nack = \"later\"\n", &["\"a\"", "ack"]);
    assert_problem(
        "[[tenants]]\nid = \"a\"\nbase_url = \"https://a.tw\"\n[tenants.funpoint]\nnotify_path = \"x.php\"\n",
        &["notify_path"],
    );
    assert_problem("not toml = = 1", &["not valid TOML"]);
    assert_problem(
        "[storage]\nlease = \"5s\"\n[delivery]\ntimeout = \"10s\"\n",
        &["storage.lease", "delivery.timeout"],
    );
    let c = ok(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n[storage]\nurl = \"postgres://u:pw@127.0.0.1:5432/payrelay\"\n",
    );
    assert_eq!(c.server.trusted_proxies.len(), 2);
    assert!(!c.storage.url.display_masked().contains("pw"));
}

#[test]
fn credentials_are_named_by_their_key_and_paths_spelled_only_when_asked() {
    use super::At;
    let tenants = At::key(None, "tenants");
    let third = At::index(&tenants, 2);
    let section = At::key(Some(&third), "sinopac");
    let hash = At::key(Some(&section), "hash_b2");
    assert!(hash.is_credential());
    assert_eq!(hash.spelled(), "tenants[2].sinopac.hash_b2");
    assert!(!At::key(Some(&section), "shop_no").is_credential());
    let admin = At::key(None, "admin");
    assert!(!At::key(Some(&admin), "api_token").is_credential(), "only a tenant's");
}

/// A table large enough to be checked on two threads reports what a small
/// one would, in the tenants' order, across the halves too.
#[test]
fn a_large_table_reports_every_problem_in_order() {
    let mut text = String::from("[providers.funpoint]\norder_suffix_len = 4\n");
    for i in 0..2_500 {
        let base = if i == 10 || i == 2_400 { "ftp://bad" } else { "https://shop.example" };
        // Tenant 2,300 takes tenant 5's domain code: a duplicate across the halves.
        let code = if i == 2_300 { 5 } else { i };
        let extra = if i == 2_401 { "bogus = 1\n" } else { "" };
        text.push_str(&format!(
            "[[tenants]]\nid = \"t{i:04}\"\nbase_url = \"{base}\"\ndomain_codes = [\"c{code}\"]\norder_suffix = \"{i:04}\"\n{extra}"
        ));
    }
    let all = problems(&text);
    let at = |needle: &str| all.iter().position(|p| p.contains(needle)).unwrap_or_else(|| panic!("{needle}: {all:?}"));
    assert!(at("tenant \"t0010\": base_url") < at("tenant \"t2400\": base_url"));
    assert_problem(&text, &["t2300", "c5"]);
    // Read in the second half, named by its own tenant.
    assert_problem(&text, &["tenant \"t2401\": bogus: unknown key"]);
    assert_eq!(all.len(), 4, "{all:?}");
    let fixed = text.replace("bogus = 1\n", "");
    let fixed = fixed
        .replace("ftp://bad", "https://shop.example")
        .replace("[\"c5\"]\norder_suffix = \"2300\"", "[\"c2300\"]\norder_suffix = \"2300\"");
    assert_eq!(ok(&fixed).table.tenants().len(), 2_500);
}

/// A value of the wrong type in a tenant names the tenant and the key, in
/// a small table and in the second half of a large one.
#[test]
fn a_wrong_type_in_a_tenant_names_it() {
    assert_problem(
        &format!("{TENANT}[[tenants]]\nid = \"b\"\nbase_url = 5\n"),
        &["tenant \"b\"", "base_url", "string"],
    );
    let mut text = String::new();
    for i in 0..2_100 {
        let base = if i == 2_050 { "5".to_owned() } else { "\"https://shop.example\"".to_owned() };
        text.push_str(&format!("[[tenants]]\nid = \"t{i:04}\"\nbase_url = {base}\n"));
    }
    assert_problem(&text, &["tenant \"t2050\"", "base_url", "string"]);
}

/// `tenants` that is not an array of tables is refused, not dropped.
#[test]
fn tenants_that_are_not_an_array_are_refused() {
    assert_problem("tenants = 5\n", &["tenants", "sequence"]);
    assert_problem("[tenants]\nid = \"a\"\n", &["tenants", "sequence"]);
}
