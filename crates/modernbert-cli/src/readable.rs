//! One-line, human-readable renderings of the JSON lines that `embed`, `classify`, `fill-mask`,
//! `rerank` and `tokenize` print, used when stdout is a terminal (a pipe or file gets the JSON).

use serde_json::Value;

/// The most characters of an input text shown before it is cut with `…`.
const TEXT_WIDTH: usize = 48;
/// The leading values of a vector that are shown.
const VALUES_SHOWN: usize = 6;

/// Renders result `index` (its position in the input, unless the line carries its own `index`)
/// for a terminal; a shape it does not know falls back to the compact JSON.
pub fn line(index: usize, value: &Value) -> String {
    let index = value.get("index").and_then(Value::as_u64).unwrap_or(index as u64);
    let body = if let Some(v) = value.get("embedding").and_then(Value::as_array) {
        vector(v)
    } else if let Some(t) = value.get("token_embeddings").and_then(Value::as_array) {
        let width = t.first().and_then(Value::as_array).map_or(0, Vec::len);
        format!("{} tokens × {width}", t.len())
    } else if let Some(entities) = value.get("entities").and_then(Value::as_array) {
        entity_list(entities)
    } else if let Some(masks) = value.get("masks").and_then(Value::as_array) {
        let text = value.get("text").and_then(Value::as_str).unwrap_or_default();
        let masks: Vec<String> = masks.iter().map(mask).collect();
        format!("{}  →  {}", cut(text), masks.join("  ;  "))
    } else if let (Some(score), Some(text)) = (value.get("score").and_then(Value::as_f64), value.get("text")) {
        // A rerank line: best first, the index is the document's.
        return format!("{score:>9.4}  #{index:<4} {}", cut(text.as_str().unwrap_or_default()));
    } else if let (Some(tokens), Some(ids)) = (value.get("tokens").and_then(Value::as_array), value.get("ids")) {
        let ids = ids.as_array().map_or(0, Vec::len);
        format!("{ids} tokens: {}", tokens.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
    } else if let Some(tokens) = value.as_array() {
        token_labels(tokens)
    } else if let Some(label) = value.get("label").and_then(Value::as_str) {
        classification(label, value)
    } else {
        value.to_string()
    };
    format!("{index:>4}  {body}")
}

fn vector(v: &[Value]) -> String {
    let values: Vec<f64> = v.iter().filter_map(Value::as_f64).collect();
    let norm = values.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut shown: Vec<String> = values.iter().take(VALUES_SHOWN).map(|x| format!("{x:+.4}")).collect();
    if values.len() > VALUES_SHOWN {
        shown.push("…".into());
    }
    format!("[{} dims]  {}  (norm {norm:.4})", values.len(), shown.join(" "))
}

fn classification(label: &str, value: &Value) -> String {
    let score = value.get("score").and_then(Value::as_f64).unwrap_or(f64::NAN);
    let others: Vec<String> = value
        .get("labels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|l| l.get("label").and_then(Value::as_str) != Some(label))
        .take(3)
        .map(|l| format!("{} {:.4}", l["label"].as_str().unwrap_or("?"), l["score"].as_f64().unwrap_or(f64::NAN)))
        .collect();
    if others.is_empty() {
        format!("{label} {score:.4}")
    } else {
        format!("{label} {score:.4}   ({})", others.join(", "))
    }
}

fn token_labels(tokens: &[Value]) -> String {
    let shown: Vec<String> = tokens
        .iter()
        .map(|t| {
            let token = t.get("token").and_then(Value::as_str).unwrap_or("?").trim();
            format!("{token}/{}", t.get("label").and_then(Value::as_str).unwrap_or("?"))
        })
        .collect();
    shown.join(" ")
}

fn entity_list(entities: &[Value]) -> String {
    if entities.is_empty() {
        return "(no entities)".into();
    }
    let shown: Vec<String> = entities
        .iter()
        .map(|e| {
            format!(
                "{} {:?} {:.4}",
                e.get("entity_group").and_then(Value::as_str).unwrap_or("?"),
                e.get("word").and_then(Value::as_str).unwrap_or("?"),
                e.get("score").and_then(Value::as_f64).unwrap_or(f64::NAN)
            )
        })
        .collect();
    shown.join("; ")
}

fn mask(m: &Value) -> String {
    let predictions: Vec<String> = m
        .get("predictions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let token = p.get("token").and_then(Value::as_str).unwrap_or("?");
            format!("{:?} {:.3}", token, p.get("score").and_then(Value::as_f64).unwrap_or(f64::NAN))
        })
        .collect();
    predictions.join(" | ")
}

/// The text itself on one line, cut to [`TEXT_WIDTH`] characters.
fn cut(text: &str) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one_line.chars().count() <= TEXT_WIDTH {
        one_line
    } else {
        one_line.chars().take(TEXT_WIDTH - 1).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::line;
    use serde_json::json;

    #[test]
    fn renders_each_command_shape() {
        let embedding = json!({ "embedding": [0.6, -0.8, 0.0, 0.0, 0.0, 0.0, 0.0] });
        assert_eq!(
            line(3, &embedding),
            "   3  [7 dims]  +0.6000 -0.8000 +0.0000 +0.0000 +0.0000 +0.0000 …  (norm 1.0000)"
        );
        let tokens = json!({ "token_embeddings": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]] });
        assert_eq!(line(0, &tokens), "   0  3 tokens × 2");
        let sequence = json!({ "logits": [2.0, 0.1], "label": "positive", "score": 0.87,
            "labels": [{ "label": "positive", "score": 0.87 }, { "label": "negative", "score": 0.13 }] });
        assert_eq!(line(1, &sequence), "   1  positive 0.8700   (negative 0.1300)");
        let tagged = json!([{ "token": "Paris", "start": 0, "end": 5, "label": "B-LOC", "score": 0.9, "logits": [] },
            { "token": " is", "start": 5, "end": 8, "label": "O", "score": 0.99, "logits": [] }]);
        assert_eq!(line(0, &tagged), "   0  Paris/B-LOC is/O");
        let entities =
            json!({ "entities": [{ "entity_group": "LOC", "score": 0.95, "word": "Paris", "start": 0, "end": 5 }] });
        assert_eq!(line(2, &entities), "   2  LOC \"Paris\" 0.9500");
        assert_eq!(line(2, &json!({ "entities": [] })), "   2  (no entities)");
        let masks = json!({ "text": "The capital of France is [MASK].", "masks": [{ "position": 6, "predictions": [
            { "token_id": 1, "token": " Paris", "score": 0.5, "logit": 9.0 },
            { "token_id": 2, "token": " Lyon", "score": 0.1, "logit": 7.0 }] }] });
        assert_eq!(line(0, &masks), "   0  The capital of France is [MASK].  →  \" Paris\" 0.500 | \" Lyon\" 0.100");
        let rerank = json!({ "index": 7, "score": 0.25, "text": "a document\nthat goes on and on well past the width of a terminal line" });
        assert_eq!(line(0, &rerank), "   0.2500  #7    a document that goes on and on well past the wi…");
        let tokenized = json!({ "ids": [1, 2, 3], "tokens": ["[CLS]", "hi", "[SEP]"], "offsets": [] });
        assert_eq!(line(0, &tokenized), "   0  3 tokens: [CLS] hi [SEP]");
        assert_eq!(line(5, &json!({ "other": 1 })), "   5  {\"other\":1}");
    }
}
