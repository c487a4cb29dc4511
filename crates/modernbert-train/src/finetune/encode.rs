//! Rows → token ids and targets, exactly as inference will see the text.
//!
//! Sequence tasks: `[CLS] text [SEP]` or `[CLS] text [SEP] pair [SEP]`, cut from the right
//! (longest first for pairs) to `max_length`. Token tasks: the words joined by single spaces, so
//! that every word after the first is encoded with its leading space as the byte-level BPE saw it
//! in pretraining; the first sub-token of each word carries the word's tag, every other token
//! `-100`.

use super::data::{TextRow, TokenRow};
use super::labels::{LabelSpace, Target};
use anyhow::{bail, Result};
use modernbert::tokenizer::{Encoding, Truncation};
use modernbert::Tokenizer;
use rayon::prelude::*;

/// One training or evaluation example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Token ids with `[CLS]`/`[SEP]`.
    pub ids: Vec<u32>,
    pub target: Target,
}

/// Encoded rows and what encoding had to cut.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    pub examples: Vec<Example>,
    /// Rows longer than `max_length` (cut to it).
    pub truncated: usize,
    /// Token tasks: labelled words lost to truncation.
    pub lost_words: usize,
}

/// Encodes one input to at most `max_length` tokens; says whether it had to cut.
fn encode_cut(tok: &Tokenizer, text: &str, pair: Option<&str>, max_length: usize) -> Result<(Encoding, bool)> {
    let full = tok.encode(text, pair, true, None)?;
    if full.ids.len() <= max_length {
        return Ok((full, false));
    }
    Ok((tok.encode(text, pair, true, Some(Truncation::right(max_length)))?, true))
}

/// Encodes sequence-task rows with their targets in `space`.
pub fn encode_text_rows(tok: &Tokenizer, rows: &[TextRow], space: &LabelSpace, max_length: usize) -> Result<Encoded> {
    let out: Vec<(Example, bool)> = rows
        .par_iter()
        .map(|r| {
            let target = space.target(&r.label, &r.origin)?;
            let (enc, cut) = encode_cut(tok, &r.text, r.pair.as_deref(), max_length)
                .map_err(|e| anyhow::anyhow!("{}: {e:#}", r.origin))?;
            Ok((Example { ids: enc.ids, target }, cut))
        })
        .collect::<Result<_>>()?;
    let truncated = out.iter().filter(|(_, c)| *c).count();
    Ok(Encoded { examples: out.into_iter().map(|(e, _)| e).collect(), truncated, lost_words: 0 })
}

/// The text the words are encoded as, and each word's character span in it.
pub fn join_words(words: &[String]) -> (String, Vec<(usize, usize)>) {
    let mut text = String::new();
    let mut spans = Vec::with_capacity(words.len());
    let mut pos = 0;
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            text.push(' ');
            pos += 1;
        }
        let n = w.chars().count();
        spans.push((pos, pos + n));
        text.push_str(w);
        pos += n;
    }
    (text, spans)
}

/// For every word, the index of its first token (`None` when truncation dropped it or it is empty).
/// A token belongs to the word whose character span it intersects (a `Ġword` token's span
/// includes the space before the word, which belongs to no word).
pub fn first_tokens(enc: &Encoding, spans: &[(usize, usize)]) -> Vec<Option<usize>> {
    let mut first = vec![None; spans.len()];
    let mut w = 0;
    for (t, &(s, e)) in enc.offsets.iter().enumerate() {
        if enc.special_tokens_mask[t] == 1 || e <= s {
            continue;
        }
        while w < spans.len() && spans[w].1 <= s {
            w += 1;
        }
        if w < spans.len() && spans[w].0 < e && s < spans[w].1 && first[w].is_none() {
            first[w] = Some(t);
        }
    }
    first
}

/// Encodes token-task rows; `tags` are the tag names by id.
pub fn encode_token_rows(tok: &Tokenizer, rows: &[TokenRow], tags: &[String], max_length: usize) -> Result<Encoded> {
    let out: Vec<(Example, bool, usize)> = rows
        .par_iter()
        .map(|r| {
            let ids: Vec<i64> = r
                .tags
                .iter()
                .map(|t| match tags.iter().position(|x| x == t) {
                    Some(i) => Ok(i as i64),
                    None => bail!("{}: tag {t:?} is not one of the {} training tags {tags:?}", r.origin, tags.len()),
                })
                .collect::<Result<_>>()?;
            let (text, spans) = join_words(&r.words);
            let (enc, cut) =
                encode_cut(tok, &text, None, max_length).map_err(|e| anyhow::anyhow!("{}: {e:#}", r.origin))?;
            let mut labels = vec![-100i64; enc.ids.len()];
            let mut lost = 0;
            for (w, first) in first_tokens(&enc, &spans).into_iter().enumerate() {
                match first {
                    Some(t) => labels[t] = ids[w],
                    None if !r.words[w].is_empty() => lost += 1,
                    None => {}
                }
            }
            Ok((Example { ids: enc.ids, target: Target::Tokens(labels) }, cut, lost))
        })
        .collect::<Result<_>>()?;
    let truncated = out.iter().filter(|(_, c, _)| *c).count();
    let lost_words = out.iter().map(|(_, _, l)| l).sum();
    Ok(Encoded { examples: out.into_iter().map(|(e, _, _)| e).collect(), truncated, lost_words })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tokenizer() -> Tokenizer {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Tokenizer::from_file(&root.join("assets/tokenizer/tokenizer.json"), 8192).unwrap()
    }

    #[test]
    fn first_sub_token_of_each_word_carries_its_tag() {
        let tok = tokenizer();
        let words: Vec<String> = ["Hugging", "Face", "Inc.", "is", "in", "NYC"].iter().map(|s| s.to_string()).collect();
        let (text, spans) = join_words(&words);
        assert_eq!(text, "Hugging Face Inc. is in NYC");
        let enc = tok.encode(&text, None, true, None).unwrap();
        let first = first_tokens(&enc, &spans);
        // Every word is found, in order, and the token after a space carries the space.
        let firsts: Vec<usize> = first.iter().map(|f| f.unwrap()).collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{firsts:?}");
        assert_eq!(enc.tokens[firsts[0]], "Hug");
        assert_eq!(enc.tokens[firsts[1]], "ĠFace");
        assert_eq!(enc.tokens[firsts[5]], "ĠNYC");
        // Inc. is two tokens (`ĠInc`, `.`): only the first is labelled.
        assert_eq!(enc.tokens[firsts[2]], "ĠInc");
        assert_eq!(firsts[3], firsts[2] + 2);
    }

    #[test]
    fn truncation_is_counted() {
        let tok = tokenizer();
        let row = TokenRow {
            words: (0..20).map(|i| format!("w{i}")).collect(),
            tags: (0..20).map(|i| if i % 2 == 0 { "B-X".into() } else { "O".into() }).collect(),
            origin: super::super::data::Origin { file: "t".into(), line: 1 },
        };
        let tags = vec!["B-X".to_string(), "O".to_string()];
        let e = encode_token_rows(&tok, &[row], &tags, 8).unwrap();
        assert_eq!(e.truncated, 1);
        assert_eq!(e.examples[0].ids.len(), 8);
        let Target::Tokens(labels) = &e.examples[0].target else { panic!() };
        let kept = labels.iter().filter(|&&l| l >= 0).count();
        assert_eq!(kept + e.lost_words, 20);
        assert_eq!(labels[0], -100);
        assert_eq!(labels[7], -100, "[SEP] is never labelled");
    }
}
