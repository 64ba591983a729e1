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

    /// The origin of an absolute URL with a host (`None` for an opaque
    /// one). An http(s) URL's is its text up to the path, without
    /// credentials: the parser has already written the host in ASCII and
    /// lower case and left a default port out, as
    /// `Url::origin().ascii_serialization()` does, which copied the host
    /// and formatted it again (a tenth of reading a tenant's base URL,
    /// issue 14's start-up).
    pub fn of_url(url: &Url) -> Option<Self> {
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https") || !url.has_host() {
            let origin = url.origin();
            return origin.is_tuple().then(|| Self(origin.ascii_serialization()));
        }
        // A special URL's path starts with the first `/` after `//`; a `/`
        // in credentials is percent-encoded, and an `@` too but the last.
        let authority = url.as_str().get(scheme.len() + 3..)?;
        let authority = &authority[..authority.find('/').unwrap_or(authority.len())];
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, after)| after);
        Some(Self(format!("{scheme}://{host_port}")))
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
    fn a_urls_origin_is_the_one_the_url_crate_serializes() {
        for text in [
            "https://PayGo.tw/a/b?c=d#e",
            "http://127.0.0.1:18101",
            "http://127.0.0.1:80/x",
            "https://paygo.tw:443",
            "http://paygo.tw:443/",
            "https://user:p%40ss@shop.example:8443/api",
            "https://a%2Fb:c@shop.example/",
            "https://a@b@shop.example/",
            "ws://Socket.example:80/x",
            "ftp://files.example/",
            "https://Bücher.example/",
            "https://xn--bcher-kva.example./",
            "http://[::1]:8080/x",
            "http://[0:0::1]/",
            "http://0x7f.1:9/",
            "https://shop.example?q=1",
            "https://shop.example#f",
        ] {
            let url = Url::parse(text).unwrap();
            let expected = url.origin().ascii_serialization();
            assert_eq!(Origin::of_url(&url).unwrap().as_str(), expected, "{text}");
        }
        for opaque in ["mailto:a@b.example", "data:text/plain,x", "file:///etc/hosts", "blob:nothing"] {
            assert!(Origin::of_url(&Url::parse(opaque).unwrap()).is_none(), "{opaque}");
        }
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
