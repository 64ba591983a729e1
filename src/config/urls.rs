//! The two URLs of routes.toml that are more than text: where callbacks
//! are stored (a PostgreSQL URL may hold a password) and a tenant's base.

use std::path::PathBuf;

use reqwest::Url;

use crate::domain::{Origin, Secret};

/// Where callbacks are stored. A PostgreSQL URL may hold a password, so it
/// is kept as a secret and shown with the password masked.
#[derive(Debug, Clone)]
pub enum StorageUrl {
    Sqlite { path: PathBuf },
    Postgres(Secret),
}

impl StorageUrl {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() || path == ":memory:" {
                return Err("a sqlite URL needs a file path (an in-memory store is not durable)".into());
            }
            Ok(Self::Sqlite { path: PathBuf::from(path) })
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Url::parse(s).map_err(|e| format!("not a valid postgres URL: {e}"))?;
            Ok(Self::Postgres(Secret::new(s)))
        } else {
            Err("must start with sqlite:// or postgres://".into())
        }
    }

    /// For `check` and logs: the URL with any password replaced by `***`.
    pub fn display_masked(&self) -> String {
        match self {
            Self::Sqlite { path } => format!("sqlite://{}", path.display()),
            Self::Postgres(secret) => match Url::parse(secret.expose()) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    // libpq also takes the password as a query parameter.
                    if url.query().is_some() {
                        let pairs: Vec<(String, String)> = url
                            .query_pairs()
                            .map(|(k, v)| {
                                let secret =
                                    k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
                                (k.into_owned(), if secret { "***".to_owned() } else { v.into_owned() })
                            })
                            .collect();
                        url.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                    url.to_string()
                }
                Err(_) => "postgres://***".into(),
            },
        }
    }
}

/// A tenant's base URL, absolute http(s), kept without a trailing slash so
/// that `join` is the plain concatenation SPEC §2 describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    text: String,
    origin: Origin,
}

impl BaseUrl {
    pub(super) fn parse(s: &str, allow_http: bool) -> Result<Self, String> {
        let url = Url::parse(s).map_err(|e| format!("{s:?} is not an absolute URL: {e}"))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => return Err(format!("{s:?} is http; use https or set allow_http = true")),
            other => return Err(format!("{s:?} has scheme {other:?}; use https")),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{s:?} must not have a query or fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{s:?} must not carry credentials"));
        }
        let origin = Origin::of_url(&url).ok_or_else(|| format!("{s:?} has no host"))?;
        let text = url.as_str().trim_end_matches('/').to_owned();
        Ok(Self { text, origin })
    }

    pub(super) fn stand_in() -> Self {
        Self { text: "https://invalid.invalid".into(), origin: Origin::stand_in() }
    }

    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.text, path)
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}
