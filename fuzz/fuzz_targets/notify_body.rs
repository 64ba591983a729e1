//! Every provider's parser, router, dedup and verifier on arbitrary bytes:
//! what `POST /{provider}/notify[/{tenant}]` asks of them.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use payrelay::config::RoutingTable;

static TABLE: LazyLock<RoutingTable> = LazyLock::new(|| {
    let text = r#"
[[tenants]]
id = "a"
base_url = "https://a.example"
order_suffix = "01"
[tenants.funpoint]
merchant_id = "1000031"
hash_key = "265flDjIvesceXWM"
hash_iv = "pOOvhGd1V2pJbjfX"
[tenants.oen]
merchant_id = "a-shop"
[tenants.sinopac]
shop_no = "NA0249_001"
[tenants.tappay]
"#;
    match payrelay::config::parse(text, &|_| None) {
        Ok(c) => c.table,
        Err(e) => panic!("{e}"),
    }
});

fuzz_target!(|data: &[u8]| {
    // The first byte picks the path form: the shared URL or tenant "a"'s.
    let (path_tenant, body) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => (Some("a"), rest),
        Some((_, rest)) => (None, rest),
        None => (None, data),
    };
    for provider in payrelay::providers::all() {
        let _ = provider.delivery_content_type(None, body);
        let Some(parsed) = provider.parse(body, Some("application/json")) else { continue };
        let _ = provider.dedup_key(&parsed);
        let _ = provider.simulated(&parsed);
        if let Ok(tenant) = provider.route(&TABLE, &parsed, path_tenant) {
            let _ = provider.verify(tenant, &parsed);
            let _ = provider.notify_path(tenant);
            let _ = payrelay::providers::tenant_dedup_key(provider, tenant, &parsed);
            let _ = payrelay::providers::conflict(provider, &parsed, &parsed);
        }
    }
});
