//! The routing table's lookup indexes, built once per load; a value two
//! tenants claim is a problem of the file.

use std::collections::HashMap;

use super::table::*;
use super::validate::Problems;

/// Builds the lookup indexes, reporting every value two tenants claim.
pub(super) fn index(
    p: &mut Problems,
    funpoint: FunpointSettings,
    tappay_suffix_len: usize,
    tenants: Vec<Tenant>,
) -> RoutingTable {
    let mut by_id = HashMap::new();
    let mut by_domain = HashMap::new();
    let mut all_suffixes = HashMap::new();
    let mut funpoint_by_suffix = HashMap::new();
    let mut tappay_by_suffix = HashMap::new();
    let mut oen_by_merchant = HashMap::new();
    let mut sinopac_by_shop = HashMap::new();

    for (i, t) in tenants.iter().enumerate() {
        if by_id.contains_key(&t.id) {
            p.push(format!("tenant {:?}", t.id.as_str()), "the id is used by more than one tenant");
        } else {
            by_id.insert(t.id.clone(), i);
        }
        for code in &t.domain_codes {
            claim(p, &mut by_domain, &tenants, "domain code", code, i);
        }
        if let Some(suffix) = &t.order_suffix {
            claim(p, &mut all_suffixes, &tenants, "order suffix", suffix, i);
            if t.funpoint.is_some() {
                suffix_fits(p, t, suffix, "funpoint", funpoint.order_suffix_len);
                funpoint_by_suffix.entry(suffix.clone()).or_insert(i);
            }
            if t.tappay.is_some() {
                suffix_fits(p, t, suffix, "tappay", tappay_suffix_len);
                tappay_by_suffix.entry(suffix.clone()).or_insert(i);
            }
        }
        if let Some(m) = t.oen.as_ref().and_then(|o| o.merchant_id.as_ref()) {
            claim(p, &mut oen_by_merchant, &tenants, "[tenants.oen] merchant_id", m, i);
        }
        if let Some(s) = t.sinopac.as_ref().and_then(|s| s.shop_no.as_ref()) {
            claim(p, &mut sinopac_by_shop, &tenants, "[tenants.sinopac] shop_no", s, i);
        }
    }

    RoutingTable {
        funpoint,
        tappay_suffix_len,
        tenants,
        by_id,
        by_domain,
        funpoint_by_suffix,
        tappay_by_suffix,
        oen_by_merchant,
        sinopac_by_shop,
    }
}

/// Gives `key` to tenant `i` in `map`, or says which tenant had it first.
fn claim(p: &mut Problems, map: &mut HashMap<String, usize>, tenants: &[Tenant], what: &str, key: &str, i: usize) {
    if let Some(&other) = map.get(key) {
        p.push(
            format!("tenants {:?} and {:?}", tenants[other].id.as_str(), tenants[i].id.as_str()),
            format!("both claim {what} {key:?}"),
        );
    } else {
        map.insert(key.to_owned(), i);
    }
}

/// An order suffix must be as long as the suffix length of every provider
/// that routes the tenant by it.
fn suffix_fits(p: &mut Problems, t: &Tenant, suffix: &str, provider: &str, len: usize) {
    let has = suffix.chars().count();
    if has != len {
        p.push(
            format!("tenant {:?}: order_suffix", t.id.as_str()),
            format!("{suffix:?} has {has} characters but providers.{provider}.order_suffix_len is {len}"),
        );
    }
}
