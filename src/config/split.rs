//! A routes table cut at its `[[tenants]]` headers, so that each tenant is
//! parsed as a small document of its own: parsing the whole of a
//! 10,000-tenant table at once kept every token and every value of it in
//! memory (56 MB for a 2 MB file), and touching that memory for the first
//! time was a third of start-up (issue 14).
//!
//! The cut is made on `toml`'s own tokens, so a `[[tenants]]` inside a
//! string or an array is never taken for a header. Only the plain shape is
//! cut: a `[[tenants]]` header, the `[tenants.…]` tables after it, any other
//! table anywhere. Anything else (a quoted or dotted `tenants` key, a
//! tenant's table after another table) gives `None`, and the caller parses
//! the whole document as before.

use toml_parser::Source;
use toml_parser::lexer::TokenKind;

/// The table cut in two: every part but the tenants, and each tenant's text
/// (its `[[tenants]]` header first), in order.
pub(super) struct Split<'a> {
    pub rest: String,
    pub tenants: Vec<&'a str>,
}

/// What a header line opens.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Header {
    /// `[[tenants]]`
    Tenant,
    /// `[tenants.…]` or `[[tenants.…]]`
    OfTenant,
    Other,
}

/// `text` cut at its headers, or `None` when it is not in the plain shape
/// (or has no `[[tenants]]`).
pub(super) fn tenant_sections(text: &str) -> Option<Split<'_>> {
    let headers = headers(text)?;
    let first = headers.first().map_or(text.len(), |&(at, _)| at);
    let mut rest = text[..first].to_owned();
    // Each tenant's byte range; a tenant's own tables extend it.
    let mut tenants: Vec<(usize, usize)> = Vec::new();
    let mut in_tenant = false;
    for (i, &(start, kind)) in headers.iter().enumerate() {
        let end = headers.get(i + 1).map_or(text.len(), |&(at, _)| at);
        match kind {
            Header::Tenant => {
                tenants.push((start, end));
                in_tenant = true;
            }
            Header::OfTenant if in_tenant => tenants.last_mut()?.1 = end,
            Header::OfTenant => return None,
            Header::Other => {
                rest.push_str(text.get(start..end)?);
                in_tenant = false;
            }
        }
    }
    let tenants = tenants.into_iter().map(|(from, to)| text.get(from..to)).collect::<Option<Vec<_>>>()?;
    (!tenants.is_empty()).then_some(Split { rest, tenants })
}

/// Where each header line starts, and what it opens; `None` for a header
/// this module does not cut on.
fn headers(text: &str) -> Option<Vec<(usize, Header)>> {
    let mut tokens = Source::new(text).lex().peekable();
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut line_start = true;
    while let Some(token) = tokens.next() {
        match token.kind() {
            TokenKind::Newline => line_start = depth == 0,
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::LeftSquareBracket if line_start && depth == 0 => {
                let start = token.span().start();
                let mut brackets = 1;
                let mut key = String::new();
                for t in tokens.by_ref() {
                    match t.kind() {
                        TokenKind::LeftSquareBracket if key.is_empty() => brackets += 1,
                        TokenKind::Atom | TokenKind::Dot => key.push_str(text.get(t.span().start()..t.span().end())?),
                        TokenKind::Whitespace => {}
                        TokenKind::RightSquareBracket => break,
                        // A quoted key, or something this cut does not read.
                        _ => return None,
                    }
                }
                let kind = match (brackets, key.as_str()) {
                    (2, "tenants") => Header::Tenant,
                    (1 | 2, k) if k.starts_with("tenants.") => Header::OfTenant,
                    (_, "tenants") => return None,
                    _ => Header::Other,
                };
                found.push((start, kind));
                line_start = false;
                // The rest of the header line (`]`, a comment) is skipped.
                for t in tokens.by_ref() {
                    if t.kind() == TokenKind::Newline {
                        line_start = true;
                        break;
                    }
                }
            }
            kind => {
                line_start = false;
                match kind {
                    TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
                    TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => depth = depth.checked_sub(1)?,
                    _ => {}
                }
            }
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError, Env, parse, parse_in_sections, parse_whole};
    use super::tenant_sections;

    /// Everything a config holds but its lookup maps (made from the tenants,
    /// in a hash map's order).
    fn shown(c: &Result<Config, ConfigError>) -> String {
        match c {
            Ok(c) => format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {} {:?} {:?} {:?}",
                c.server,
                c.storage,
                c.delivery,
                c.admin,
                c.table.tenants(),
                c.table.funpoint,
                c.table.tappay_suffix_len,
                c.notify_limits,
                c.apis,
                c.reconcile
            ),
            Err(e) => format!("{:?}", e.problems()),
        }
    }

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "5294y06JbISpM5x9".to_owned())
    }

    fn tenant(i: usize) -> String {
        format!(
            "[[tenants]]\nid = \"t{i}\"\nbase_url = \"https://t{i}.example.tw\"\ndomain_codes = [\"t{i}\"]\n\
             order_suffix = \"{i:02}\"\n[tenants.funpoint]\nhash_key = \"${{KEY}}\"\nhash_iv = \"${{KEY}}\"\n"
        )
    }

    /// `text` read in sections (asserting that it was) and whole: the same.
    fn same_both_ways(text: &str, env: &Env<'_>) {
        let split = tenant_sections(text).expect("cut");
        let fast = parse_in_sections(&split, env).expect("read in sections");
        let whole = parse_whole(text, env);
        assert!(whole.is_ok());
        assert_eq!(shown(&Ok(fast)), shown(&whole));
    }

    #[test]
    fn a_plain_table_reads_the_same_in_sections() {
        let repo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.toml")).unwrap();
        same_both_ways(&repo, &|_| None);
        let tenants: String = (1..=30).map(tenant).collect();
        // Other tables before, between and after the tenants; comments,
        // indented headers, a multi-line array.
        let text = format!(
            "# routes\n[server]\nlisten = \"127.0.0.1:9\"\n\n{}  [delivery] # between\ntimeout = \"5s\"\n\
             retry = [\n  \"1s\",\n  \"2s\",\n]\n{}[providers.funpoint]\nmax_body_bytes = 9000\n",
            tenants,
            tenant(31)
        );
        same_both_ways(&text, &env);
        let quoted = tenant(32).replace(
            "order_suffix",
            "note_ml = \"\"\"\n[[tenants]]\nid = \"x\"\n\"\"\"\nnote = '[[tenants]]'\norder_suffix",
        );
        let split = tenant_sections(&quoted).unwrap();
        assert_eq!(split.tenants.len(), 1, "headers inside strings are not headers");
        // A line of an array that starts with `[` is not a header either.
        let nested = format!("x = [\n[1, 2],\n  [3],\n]\n[y]\n{}", tenant(1));
        let split = tenant_sections(&nested).unwrap();
        assert_eq!(
            (split.rest.as_str(), split.tenants),
            ("x = [\n[1, 2],\n  [3],\n]\n[y]\n", vec![tenant(1).as_str()])
        );
    }

    #[test]
    fn a_table_of_another_shape_is_read_whole() {
        let two = format!("{}{}", tenant(1), tenant(2));
        // A tenant's table after another table; a quoted header; `tenants`
        // as a plain table; no tenants at all.
        let after_other = two.replacen("[tenants.funpoint]", "[server]\n[tenants.funpoint]", 2).replacen(
            "[server]\n[tenants.funpoint]",
            "[tenants.funpoint]",
            1,
        );
        for text in [
            after_other.as_str(),
            &two.replace("[[tenants]]", "[[\"tenants\"]]"),
            "[tenants]\nid = 1\n",
            "[server]\nlisten = \"127.0.0.1:9\"\n",
        ] {
            assert!(tenant_sections(text).is_none(), "{text}");
        }
        // Cut, but with `tenants` also in the rest: read whole, which refuses it.
        let dotted = format!("tenants.x = 1\n{two}");
        let split = tenant_sections(&dotted).unwrap();
        assert!(parse_in_sections(&split, &env).is_none());
        assert!(parse(&dotted, &env).is_err());
        assert_eq!(shown(&parse(&after_other, &env)), shown(&parse_whole(&after_other, &env)));
    }

    #[test]
    fn a_problem_is_named_as_the_whole_reading_names_it() {
        let mut text: String = (1..=5).map(tenant).collect();
        text = text.replacen("order_suffix = \"03\"", "order_suffix = \"03\"\nhash_kye = 1", 1);
        text = text.replacen("${KEY}", "${MISSING}", 1);
        text.push_str("[[tenants]\n");
        let bad = text.replace("[[tenants]\n", "");
        let split = tenant_sections(&bad).unwrap();
        assert!(parse_in_sections(&split, &env).is_none());
        let (fast, whole) = (parse(&bad, &env).unwrap_err(), parse_whole(&bad, &env).unwrap_err());
        assert_eq!(fast.problems(), whole.problems());
        assert!(fast.problems().iter().any(|p| p.contains("tenant \"t3\": hash_kye")), "{:?}", fast.problems());
        assert!(parse(&text, &env).unwrap_err().problems()[0].contains("not valid TOML"));
    }
}
