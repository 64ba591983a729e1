//! A web origin, `scheme://host[:port]`, in the form browsers send in the
//! `Origin` header (lower case, default port left out), so that comparing
//! is comparing strings.

use std::fmt;

use reqwest::Url;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// Parses an origin as written in the config: no path (a lone `/` is
    /// tolerated), no query, no credentials.
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = Url::parse(s).map_err(|e| format!("{s:?} is not an origin: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{s:?} is not an http(s) origin"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!("{s:?} must be scheme://host[:port], without a path"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{s:?} must not carry credentials"));
        }
        Self::of_url(&url).ok_or_else(|| format!("{s:?} has no host"))
    }

    /// The origin of an absolute http(s) URL.
    pub fn of_url(url: &Url) -> Option<Self> {
        let origin = url.origin();
        origin.is_tuple().then(|| Self(origin.ascii_serialization()))
    }

    pub(crate) fn stand_in() -> Self {
        Self("https://invalid.invalid".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_a_browser() {
        assert_eq!(Origin::parse("https://PayGo.tw").unwrap().as_str(), "https://paygo.tw");
        assert_eq!(Origin::parse("https://paygo.tw:443/").unwrap().as_str(), "https://paygo.tw");
        assert_eq!(Origin::parse("http://127.0.0.1:18110").unwrap().as_str(), "http://127.0.0.1:18110");
    }

    #[test]
    fn refuses_paths_and_other_schemes() {
        for bad in
            ["paygo.tw", "ftp://paygo.tw", "https://paygo.tw/shop", "https://a:b@paygo.tw", "https://paygo.tw/?q=1"]
        {
            assert!(Origin::parse(bad).is_err(), "{bad:?} passed");
        }
    }
}
