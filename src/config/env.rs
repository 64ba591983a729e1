//! `${NAME}` and `${NAME:-default}` in any string value of routes.toml,
//! replaced from the environment at load time, as a shell would.

/// Replaces every `${…}` in `s`. `lookup` answers for one variable name.
/// A missing variable without a default is an error naming it.
#[cfg(test)]
pub fn substitute(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    substitute_noting(s, lookup, &mut Vec::new())
}

/// Like [`substitute`], and pushes every value taken from the environment
/// onto `taken`, so that diagnostics can hide them.
pub fn substitute_noting(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    taken: &mut Vec<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // The raw value is never quoted: it may be a secret written inline.
        let end = after.find('}').ok_or_else(|| "unclosed \"${\"".to_owned())?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("\"${{{expr}}}\" is not a valid variable reference"));
        }
        match (lookup(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => {
                out.push_str(&v);
                taken.push(v);
            }
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::substitute;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("secret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_references() {
        assert_eq!(substitute("${KEY}", &env).unwrap(), "secret");
        assert_eq!(substitute("pg://u:${KEY}@h/${KEY}", &env).unwrap(), "pg://u:secret@h/secret");
        assert_eq!(substitute("no refs $ {x}", &env).unwrap(), "no refs $ {x}");
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(substitute("${NOPE:-}", &env).unwrap(), "");
        assert_eq!(substitute("${NOPE:-x y}", &env).unwrap(), "x y");
        assert_eq!(substitute("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(substitute("${EMPTY}", &env).unwrap(), "");
        assert_eq!(substitute("${KEY:-d}", &env).unwrap(), "secret");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = substitute("${PAYGO_HASH_KEY}", &env).unwrap_err();
        assert!(err.contains("PAYGO_HASH_KEY"), "{err}");
        assert!(substitute("${", &env).is_err());
        assert!(substitute("${A-B}", &env).is_err());
    }
}
