//! The identifier-aware tokenizer BM25 uses for code and queries alike: every identifier (a run of
//! letters, digits and `_`) gives its whole lower-cased form plus, when it has several, its
//! camelCase / PascalCase / snake_case / kebab-free parts: `parseHTTPResponse_v2` →
//! `parsehttpresponse_v2`, `parse`, `http`, `response`, `v2`. One-character tokens are dropped.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Longest token kept (longer runs are base64, hashes, minified code).
const MAX_TOKEN_CHARS: usize = 48;

/// The parts of one identifier, in order (not lower-cased).
pub fn identifier_parts(ident: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    for piece in ident.split('_').filter(|p| !p.is_empty()) {
        let chars: Vec<(usize, char)> = piece.char_indices().collect();
        let mut start = 0usize;
        for i in 1..chars.len() {
            let (at, c) = chars[i];
            let (_, prev) = chars[i - 1];
            let next = chars.get(i + 1).map(|&(_, c)| c);
            // fooBar | HTTPServer (split before "Server") | base64Encode (digit → upper)
            let boundary = (c.is_uppercase() && (prev.is_lowercase() || prev.is_numeric()))
                || (c.is_uppercase() && prev.is_uppercase() && next.is_some_and(char::is_lowercase));
            if boundary {
                parts.push(&piece[start..at]);
                start = at;
            }
        }
        parts.push(&piece[start..]);
    }
    parts
}

/// Every token of `text` with its byte offsets: identifiers whole, then their parts.
pub fn tokens(text: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let flush = |s: usize, e: usize, out: &mut Vec<(String, usize, usize)>| {
        let ident = &text[s..e];
        let trimmed = ident.trim_matches('_');
        if trimmed.chars().count() < 2 || trimmed.chars().count() > MAX_TOKEN_CHARS {
            return;
        }
        out.push((trimmed.to_lowercase(), s, e));
        let parts = identifier_parts(trimmed);
        if parts.len() > 1 {
            for p in parts {
                if p.chars().count() >= 2 {
                    let off = p.as_ptr() as usize - text.as_ptr() as usize;
                    out.push((p.to_lowercase(), off, off + p.len()));
                }
            }
        }
    };
    for (i, c) in text.char_indices() {
        let word = c.is_alphanumeric() || c == '_';
        match (word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                flush(s, i, &mut out);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        flush(s, text.len(), &mut out);
    }
    out
}

/// The query's distinct terms, in order of first appearance.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tokens(query).into_iter().map(|t| t.0).filter(|t| seen.insert(t.clone())).collect()
}

/// [`tokens`] as a tantivy tokenizer (registered as `code`).
#[derive(Clone, Default)]
pub struct CodeTokenizer;

pub struct CodeTokenStream {
    tokens: Vec<Token>,
    index: usize,
}

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream {
        let tokens = tokens(text)
            .into_iter()
            .enumerate()
            .map(|(position, (text, offset_from, offset_to))| Token {
                offset_from,
                offset_to,
                position,
                text,
                position_length: 1,
            })
            .collect();
        CodeTokenStream { tokens, index: 0 }
    }
}

impl TokenStream for CodeTokenStream {
    fn advance(&mut self) -> bool {
        self.index += 1;
        self.index <= self.tokens.len()
    }
    fn token(&self) -> &Token {
        &self.tokens[self.index - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.index - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|t| t.0).collect()
    }

    #[test]
    fn identifiers_whole_and_in_parts() {
        assert_eq!(identifier_parts("parseHTTPResponse"), vec!["parse", "HTTP", "Response"]);
        assert_eq!(identifier_parts("snake_case_name"), vec!["snake", "case", "name"]);
        assert_eq!(identifier_parts("base64Encode"), vec!["base64", "Encode"]);
        assert_eq!(identifier_parts("XMLParser"), vec!["XML", "Parser"]);
        assert_eq!(words("fn read_to_string(p)"), vec!["fn", "read_to_string", "read", "to", "string"]);
        assert_eq!(words("getUserById x"), vec!["getuserbyid", "get", "user", "by", "id"]);
        assert_eq!(words("__init__ a.b"), vec!["init"]);
        assert_eq!(words("Größe_berechnen"), vec!["größe_berechnen", "größe", "berechnen"]);
        assert_eq!(query_terms("parse parse JSON"), vec!["parse", "json"]);
        for (t, s, e) in tokens("let fooBar = baz_qux;") {
            let piece = &"let fooBar = baz_qux;"[s..e];
            assert!(piece.to_lowercase().contains(&t), "{t} at {s}..{e} = {piece}");
        }
    }
}
