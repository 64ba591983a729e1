//! routes.toml: read the file, substitute `${VAR}`s, deserialize into the
//! raw mirror (collecting unknown keys), then validate into [`Config`].
//! `check`, `serve` and SIGHUP all go through [`load`].

mod env;
mod index;
mod raw;
mod raw_tenant;
mod split;
mod table;
mod urls;
mod validate;
mod verify;

use std::borrow::Cow;
use std::path::Path;

use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use table::{
    AckMode, AdminConfig, BaseUrl, Config, DeliveryConfig, FunpointSettings, FunpointTenant, FunpointVerify,
    MIN_ADMIN_TOKEN, NotifyLimits, OenTenant, RoutingTable, ServerConfig, SinopacTenant, StorageConfig, StorageUrl,
    TapPayTenant, Tenant, suffix_of,
};
pub use verify::{Apis, ProviderApi, QueryPolicy, ReconcileConfig, SinopacKeys, TapPayCredentials};

/// Why a config cannot be used: every problem, one per line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Read { .. } => vec![self.to_string()],
            Self::Invalid(p) => p.clone(),
        }
    }
}

/// Loads and validates the file at `path`, reading `${VAR}`s from the
/// process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
    parse(&text, &|name| std::env::var(name).ok())
}

/// What answers for a `${VAR}`: the process environment, or a test's own.
pub type Env<'a> = dyn Fn(&str) -> Option<String> + Sync + 'a;

/// Validates config text; `env` answers for `${VAR}`s (tests pass their own).
pub fn parse(text: &str, env: &Env<'_>) -> Result<Config, ConfigError> {
    if let Some(config) = split::tenant_sections(text).and_then(|split| parse_in_sections(&split, env)) {
        return Ok(config);
    }
    parse_whole(text, env)
}

/// The table read with each tenant parsed on its own (see [`split`]), when
/// that gives a config without a single problem; `None` otherwise, and the
/// whole document is read again by [`parse_whole`], whose messages name
/// every problem as they always did.
fn parse_in_sections(split: &split::Split<'_>, env: &Env<'_>) -> Option<Config> {
    let mut doc = DeTable::parse(&split.rest).ok()?;
    if doc.get_ref().contains_key("tenants") {
        return None;
    }
    let (mut problems, mut taken) = (Vec::new(), Vec::new());
    for (key, value) in doc.get_mut().iter_mut() {
        substitute_all(At::key(None, key.get_ref()), value.get_mut(), env, &mut problems, &mut taken);
    }
    let mut unknown = false;
    let raw: raw::RawConfig = noting_unknown(toml::de::Deserializer::from(doc), &mut |_| unknown = true).ok()?;
    if unknown || !problems.is_empty() {
        return None;
    }
    // Each tenant read and checked in one go, while its text and values are
    // fresh in the cache (issue 14's start-up). A tenant is large: the
    // first half's vector is made with room for all, so that the second
    // half's is the only one copied (a vector grown one tenant at a time
    // was copied over and over).
    let all = split.tenants.len();
    let read = halves(split.tenants.clone(), |from, texts| {
        let mut read = Vec::with_capacity(if from == 0 { all } else { texts.len() });
        let mut problems = validate::Problems::default();
        for (i, text) in texts.into_iter().enumerate() {
            read.push(validate::tenant(&mut problems, from + i, tenant_alone(from + i, text, env)?));
        }
        problems.is_empty().then_some(read)
    });
    let mut parts = read.into_iter();
    let mut tenants = parts.next()??;
    for part in parts {
        tenants.extend(part?);
    }
    validate::assemble(raw, |_| tenants).ok()
}

/// The `i`th tenant from its own text (`[[tenants]]` and its tables), if it
/// reads without a problem.
fn tenant_alone(i: usize, text: &str, env: &Env<'_>) -> Option<raw::RawTenant> {
    let mut doc = DeTable::parse(text).ok()?;
    let Some(DeValue::Array(items)) = doc.get_mut().remove("tenants").map(Spanned::into_inner) else { return None };
    let [mut item]: [Spanned<DeValue<'_>>; 1] = items.into_iter().collect::<Vec<_>>().try_into().ok()?;
    if !doc.get_ref().is_empty() {
        return None;
    }
    let (mut problems, mut taken) = (Vec::new(), Vec::new());
    let tenants = At::key(None, "tenants");
    substitute_all(At::index(&tenants, i), item.get_mut(), env, &mut problems, &mut taken);
    let mut unknown = false;
    let tenant = noting_unknown(ValueDeserializer::from(item), &mut |_| unknown = true).ok()?;
    (problems.is_empty() && !unknown).then_some(tenant)
}

/// `T` from `de`, each key it does not know told to `unknown`: one copy of
/// the (large) deserializing code for every caller of a `T`.
fn noting_unknown<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    de: D,
    unknown: &mut dyn FnMut(String),
) -> Result<T, D::Error> {
    serde_ignored::deserialize(de, |path| unknown(path.to_string()))
}

/// The whole document parsed at once.
fn parse_whole(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    // The document borrowed from `text`, deserialized straight into the raw
    // mirror: no owned `toml::Table` in between (half of loading a
    // 10,000-tenant table, issue 14).
    let mut doc = DeTable::parse(text)
        .map_err(|e| ConfigError::Invalid(vec![format!("not valid TOML: {}", e.to_string().trim())]))?;

    let mut problems = Vec::new();
    let mut taken = Vec::new();
    for (key, value) in doc.get_mut().iter_mut() {
        substitute_all(At::key(None, key.get_ref()), value.get_mut(), env, &mut problems, &mut taken);
    }

    let names = tenant_names(doc.get_ref());
    // The tenants are read apart from the rest, one at a time (issue 14);
    // anything but an array is left for the raw mirror to refuse.
    let is_array = doc.get_ref().get("tenants").is_some_and(|t| t.get_ref().is_array());
    let tenants = match is_array.then(|| doc.get_mut().remove("tenants")).flatten().map(Spanned::into_inner) {
        Some(DeValue::Array(items)) => Some(items.into_iter().collect::<Vec<_>>()),
        _ => None,
    };
    let mut unknown = Vec::new();
    let raw: Result<raw::RawConfig, _> = noting_unknown(toml::de::Deserializer::from(doc), &mut |path| {
        unknown.push(describe_path(&path, &names));
    });
    for key in unknown {
        problems.push(format!("{key}: unknown key"));
    }
    let tenants = tenants.map(|items| read_tenants(items, &names, &taken, &mut problems));
    let mut raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            // A type error quotes the value, which may have come from a ${VAR}.
            problems.push(redact(e.to_string().trim(), &taken));
            return Err(ConfigError::Invalid(problems));
        }
    };
    match tenants {
        Some(Some(tenants)) => raw.tenants = tenants,
        Some(None) => return Err(ConfigError::Invalid(problems)),
        None => {}
    }
    match Config::try_from(raw) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError::Invalid(problems)),
        Err(more) => {
            problems.extend(more);
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// Tables with this many tenants are read and checked in two halves.
const TWO_THREADS_FROM: usize = 2_000;

/// `work` over `items` from index 0, or over two halves on two threads when
/// there are many (a 10,000-tenant table's start-up, issue 14); the
/// results in order.
fn halves<T: Send, R: Send>(mut items: Vec<T>, work: impl Fn(usize, Vec<T>) -> R + Sync) -> Vec<R> {
    if items.len() < TWO_THREADS_FROM {
        return vec![work(0, items)];
    }
    let second = items.split_off(items.len() / 2);
    let half = items.len();
    std::thread::scope(|s| {
        let other = s.spawn(|| work(half, second));
        let first = work(0, items);
        vec![first, other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))]
    })
}

/// The `[[tenants]]` read one at a time, in two halves for a large table;
/// each one's unknown keys and type errors named by its tenant. `None` if
/// any could not be read (its problem is in `problems`).
fn read_tenants(
    items: Vec<Spanned<DeValue<'_>>>,
    names: &[String],
    taken: &[String],
    problems: &mut Vec<String>,
) -> Option<Vec<raw::RawTenant>> {
    let halves = halves(items, |from, items| {
        let mut found = Vec::new();
        let read: Vec<Option<raw::RawTenant>> =
            items.into_iter().enumerate().map(|(i, t)| read_tenant(from + i, t, names, taken, &mut found)).collect();
        (read, found)
    });
    let mut tenants = Vec::new();
    for (read, found) in halves {
        problems.extend(found);
        tenants.extend(read);
    }
    tenants.into_iter().collect()
}

fn read_tenant(
    i: usize,
    item: Spanned<DeValue<'_>>,
    names: &[String],
    taken: &[String],
    problems: &mut Vec<String>,
) -> Option<raw::RawTenant> {
    let mut unknown = Vec::new();
    let tenant = noting_unknown(ValueDeserializer::from(item), &mut |path| unknown.push(path));
    for key in unknown {
        problems.push(format!("{}: unknown key", describe_path(&format!("tenants.{i}.{key}"), names)));
    }
    let at = || describe_path(&format!("tenants.{i}."), names);
    tenant.map_err(|e| problems.push(format!("{}{}", at(), redact(e.to_string().trim(), taken)))).ok()
}

/// `text` with every non-blank value in `secrets` replaced by `***`.
fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.trim().is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// Where a value sits in the document (`tenants[2].oen.api_token`): a chain
/// of borrowed segments, spelled out only for a problem — a 10,000-tenant
/// table has a hundred thousand values, and formatting every path was a
/// tenth of loading it (issue 14).
#[derive(Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    key: Option<&'a str>,
    index: usize,
}

impl<'a> At<'a> {
    fn key(parent: Option<&'a At<'a>>, key: &'a str) -> Self {
        Self { parent, key: Some(key), index: 0 }
    }

    fn index(parent: &'a At<'a>, index: usize) -> Self {
        Self { parent: Some(parent), key: None, index }
    }

    fn root(&self) -> &At<'a> {
        self.parent.map_or(self, |p| p.root())
    }

    fn spelled(&self) -> String {
        let mut out = self.parent.map(At::spelled).unwrap_or_default();
        match self.key {
            Some(k) if out.is_empty() => out.push_str(k),
            Some(k) => {
                out.push('.');
                out.push_str(k);
            }
            None => out.push_str(&format!("[{}]", self.index)),
        }
        out
    }

    fn is_credential(&self) -> bool {
        self.root().key == Some("tenants") && self.key.is_some_and(verify::is_credential_key)
    }
}

fn substitute_all(
    at: At<'_>,
    value: &mut DeValue<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
    taken: &mut Vec<String>,
) {
    match value {
        DeValue::String(s) if s.contains("${") => match env::substitute_noting(s, env, taken) {
            Ok(v) => *s = Cow::Owned(v),
            Err(e) => problems.push(format!("{}: {e}", at.spelled())),
        },
        DeValue::String(s) if !s.is_empty() && at.is_credential() => {
            let at = at.spelled();
            problems.push(format!("{at}: a credential is read only from the environment: write \"${{NAME}}\""));
        }
        DeValue::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                substitute_all(At::index(&at, i), v.get_mut(), env, problems, taken);
            }
        }
        DeValue::Table(t) => {
            for (k, v) in t.iter_mut() {
                substitute_all(At::key(Some(&at), k.get_ref()), v.get_mut(), env, problems, taken);
            }
        }
        _ => {}
    }
}

/// The tenants' ids by position, to name a tenant in an unknown-key message.
fn tenant_names(doc: &DeTable<'_>) -> Vec<String> {
    let id = |t: &DeValue<'_>| t.get("id").and_then(|id| id.get_ref().as_str()).unwrap_or("?").to_owned();
    doc.get("tenants")
        .and_then(|t| t.get_ref().as_array())
        .map(|ts| ts.iter().map(|t| id(t.get_ref())).collect())
        .unwrap_or_default()
}

/// `tenants.2.funpoint.hash_kye` → `tenant "ro": funpoint.hash_kye`.
fn describe_path(path: &str, names: &[String]) -> String {
    // serde_ignored writes an Option's `Some` as a `?` segment.
    let path = path.replace(".?", "");
    if let Some(rest) = path.strip_prefix("tenants.") {
        let (index, key) = rest.split_once('.').unwrap_or((rest, ""));
        if let Some(name) = index.parse::<usize>().ok().and_then(|i| names.get(i)) {
            return format!("tenant {name:?}: {key}");
        }
    }
    path
}

#[cfg(test)]
mod tests;
