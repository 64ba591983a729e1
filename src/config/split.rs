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

/// From this size a table's headers are found in two halves on two threads
/// (a 10,000-tenant table is 2 MB: its lexing was a tenth of start-up).
const TWO_THREADS_FROM: usize = 256 * 1024;

/// Where each header line starts, and what it opens; `None` for a header
/// this module does not cut on.
fn headers(text: &str) -> Option<Vec<(usize, Header)>> {
    if text.len() >= TWO_THREADS_FROM {
        // The first `[[tenants]]` line from the middle on (a character's start).
        let middle = (text.len() / 2..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        let cut = text[middle..].find("\n[[tenants]]").map(|at| middle + at + 1);
        if let Some(found) = cut.and_then(|cut| in_two(text, cut)) {
            return found;
        }
    }
    let scan = scan(text)?;
    Some(scan.found)
}

/// The headers of `text` found on two threads, the second from `cut` (a
/// line that starts with `[[tenants]]`); `None` when `cut` turns out not to
/// start a line outside any string, array or table value, so that the
/// halves cannot be read apart.
///
/// Lexing is left to right without state, so the tokens of `text[..cut]`
/// are those of `text` up to `cut` when its last token is a newline at
/// depth 0 (a string or array still open at `cut` would be the last token,
/// or leave a depth); and lexing from `cut` is then what lexing the whole
/// does from there.
fn in_two(text: &str, cut: usize) -> Option<Option<Vec<(usize, Header)>>> {
    let (first, second) = std::thread::scope(|s| {
        let second = s.spawn(|| scan(&text[cut..]));
        (scan(&text[..cut]), second.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    let mut first = first.filter(|f| f.ends_a_line)?;
    let Some(second) = second else { return Some(None) };
    first.found.extend(second.found.into_iter().map(|(at, kind)| (cut + at, kind)));
    Some(Some(first.found))
}

/// What [`scan`] found in a text.
struct Scan {
    found: Vec<(usize, Header)>,
    /// The text ends with a newline outside any value: what follows it
    /// starts a line.
    ends_a_line: bool,
}

fn scan(text: &str) -> Option<Scan> {
    let mut tokens = Source::new(text).lex().peekable();
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut line_start = true;
    while let Some(token) = tokens.next() {
        match token.kind() {
            TokenKind::Eof => break,
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
    Some(Scan { found, ends_a_line: line_start && !text.is_empty() })
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError, Env, parse, parse_in_sections, parse_whole};
    use super::{TWO_THREADS_FROM, headers, in_two, scan, tenant_sections};

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

    /// Texts whose lines are cut everywhere by the two-thread scan below.
    fn tricky() -> Vec<String> {
        let t = |i: usize| tenant(i);
        vec![
            format!("[server]\nlisten = \"127.0.0.1:9\"\n{}{}{}", t(1), t(2), t(3)),
            // `[[tenants]]` lines inside multi-line strings of both kinds, an
            // array, after a comment and a CRLF line.
            format!("{}note = \"\"\"\n[[tenants]]\nid = \"x\"\n\"\"\"\n{}", t(1), t(2)),
            format!("{}note = '''\n[[tenants]]\n'''\r\n{}", t(1), t(2)),
            format!("{}codes = [\n[[tenants]]\n]\n{}", t(1), t(2)),
            format!("{}# [[tenants]]\n[[tenants]] # a comment\nid = \"c\"\n{}", t(1), t(2)),
            format!("{}\r\n[[tenants]]\r\nid = \"r\"\r\n", t(1)),
            // A header this cut refuses after the cut, and before it.
            format!("{}[\"quoted\"]\n{}", t(1), t(2)),
            format!("[\"quoted\"]\n{}{}", t(1), t(2)),
        ]
    }

    #[test]
    fn headers_found_in_two_halves_are_those_found_whole() {
        for text in tricky() {
            let whole = scan(&text).map(|s| s.found);
            let mut usable = 0;
            for cut in (1..text.len()).filter(|&i| text.as_bytes()[i - 1] == b'\n') {
                match in_two(&text, cut) {
                    Some(found) => {
                        assert_eq!(found, whole, "cut at {cut} of {text:?}");
                        usable += 1;
                    }
                    // Refused only where the line is inside a value.
                    None => assert!(
                        whole.as_ref().is_none_or(|w| !w.iter().any(|&(at, _)| at == cut)),
                        "a header's line refused at {cut} of {text:?}"
                    ),
                }
            }
            // A quoted header before a cut leaves it unusable: read on one thread.
            assert!(usable > 0 || whole.is_none(), "{text:?}");
        }
        // The lines inside a string or an array are never cut on.
        let inside = &tricky()[1..4];
        for text in inside {
            let line = text.match_indices("\n[[tenants]]\n").map(|(at, _)| at + 1).next().unwrap();
            assert!(in_two(text, line).is_none(), "{text:?} cut inside a value at {line}");
        }
    }

    #[test]
    fn a_large_table_is_cut_on_two_threads_as_on_one() {
        // The middle falls inside a multi-line string holding tenant headers,
        // then on a plain header: both give what one thread finds.
        let tenants: String = (0..3000).map(tenant).collect();
        let trap = format!("note = \"\"\"\n{}\"\"\"\n", "[[tenants]]\nid = \"x\"\n".repeat(3000));
        for text in [tenants.clone(), format!("{tenants}{trap}{tenants}"), format!("# é\n{tenants}")] {
            assert!(text.len() >= TWO_THREADS_FROM);
            assert_eq!(headers(&text), scan(&text).map(|s| s.found));
            assert_eq!(headers(&text).map(|h| h.len()), Some(if text.contains(&trap) { 12_000 } else { 6_000 }));
        }
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
