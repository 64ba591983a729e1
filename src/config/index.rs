//! The routing table's lookup indexes, built once per load; a value two
//! tenants claim is a problem of the file.

use super::table::*;
use super::validate::Problems;

/// Builds the lookup indexes, reporting every value two tenants claim.
pub(super) fn index(
    p: &mut Problems,
    funpoint: FunpointSettings,
    tappay_suffix_len: usize,
    tenants: Vec<Tenant>,
) -> RoutingTable {
    let n = sizes(&tenants);
    let mut by_id = sized(tenants.len());
    let [mut by_domain, mut all_suffixes, mut funpoint_by_suffix, mut tappay_by_suffix] =
        [n[0], n[1], n[2], n[3]].map(sized);
    let [mut oen_by_merchant, mut sinopac_by_shop, mut by_origin] = [n[4], n[5], n[6]].map(sized);

    for (i, t) in tenants.iter().enumerate() {
        for origin in &t.origins {
            by_origin.entry(origin.as_str().to_owned()).or_insert(i);
        }
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
        by_origin,
    }
}

/// How many keys each map gets, counted in one pass over the tenants: each
/// map is made at its final size (grown one insert at a time, a
/// 10,000-tenant table's were rehashed over and over, issue 14).
fn sizes(tenants: &[Tenant]) -> [usize; 7] {
    let mut n = [0usize; 7];
    for t in tenants {
        let suffixed = t.order_suffix.is_some();
        n[0] += t.domain_codes.len();
        n[1] += usize::from(suffixed);
        n[2] += usize::from(suffixed && t.funpoint.is_some());
        n[3] += usize::from(suffixed && t.tappay.is_some());
        n[4] += usize::from(t.oen.is_some());
        n[5] += usize::from(t.sinopac.is_some());
        n[6] += t.origins.len();
    }
    n
}

fn sized<K>(n: usize) -> Index<K> {
    Index::with_capacity_and_hasher(n, Default::default())
}

/// Gives `key` to tenant `i` in `map`, or says which tenant had it first.
fn claim(p: &mut Problems, map: &mut Index<String>, tenants: &[Tenant], what: &str, key: &str, i: usize) {
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
