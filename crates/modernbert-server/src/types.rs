//! Request and response bodies, in TEI's (and OpenAI's) JSON shapes.
//!
//! Inputs that JSON Schema writes as `oneOf` (a string, or a list of strings or token ids) are
//! parsed by hand from a [`Value`] so that a wrong shape gives a message naming the field.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// One model input: text, or token ids used exactly as given (no [CLS]/[SEP] added).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Text(String),
    Ids(Vec<u32>),
}

/// `inputs` (TEI) or `input` (OpenAI): a string, token ids, or a list of those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// The inputs in request order.
    pub items: Vec<Input>,
    /// The request held one bare input rather than a list.
    pub single: bool,
}

fn parse_ids(v: &[Value]) -> Option<Vec<u32>> {
    v.iter().map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok())).collect()
}

impl Inputs {
    fn from_value(v: Value) -> Result<Self, String> {
        const SHAPE: &str = "must be a string, a list of token ids, or a list of strings or token-id lists";
        match v {
            Value::String(s) => Ok(Self { items: vec![Input::Text(s)], single: true }),
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => {
                let ids =
                    parse_ids(&a).ok_or_else(|| format!("token ids must be integers in 0..2^32; inputs {SHAPE}"))?;
                Ok(Self { items: vec![Input::Ids(ids)], single: true })
            }
            Value::Array(a) => {
                let items = a
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| match x {
                        Value::String(s) => Ok(Input::Text(s)),
                        Value::Array(ids) => parse_ids(&ids)
                            .map(Input::Ids)
                            .ok_or_else(|| format!("input {i}: token ids must be integers in 0..2^32")),
                        other => Err(format!("input {i} is {}; inputs {SHAPE}", kind(&other))),
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Self { items, single: false })
            }
            other => Err(format!("inputs is {}; it {SHAPE}", kind(&other))),
        }
    }
}

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// A JSON type name for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `inputs` of `/predict`: a string, a pair `[a, b]`, or a batch `[[a], [a, b], ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictInputs {
    /// `(text, pair)` in request order.
    pub items: Vec<(String, Option<String>)>,
    /// The request held one input (string or pair) rather than a batch.
    pub single: bool,
}

impl<'de> Deserialize<'de> for PredictInputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const SHAPE: &str =
            "inputs must be a string, a pair [string, string], or a batch [[string], [string, string], ...]";
        let sequence = |v: &[Value]| -> Option<(String, Option<String>)> {
            let s = |i: usize| v.get(i).and_then(Value::as_str).map(str::to_string);
            match v.len() {
                1 => Some((s(0)?, None)),
                2 => Some((s(0)?, Some(s(1)?))),
                _ => None,
            }
        };
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Self { items: vec![(s, None)], single: true }),
            Value::Array(a) if a.first().is_some_and(Value::is_string) => {
                let item = sequence(&a).ok_or_else(|| D::Error::custom(SHAPE))?;
                Ok(Self { items: vec![item], single: true })
            }
            Value::Array(a) => {
                let items = a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        x.as_array()
                            .and_then(|v| sequence(v))
                            .ok_or_else(|| D::Error::custom(format!("batch item {i}: {SHAPE}")))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Self { items, single: false })
            }
            other => Err(D::Error::custom(format!("inputs is {}; {SHAPE}", kind(&other)))),
        }
    }
}

fn direction_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Direction, D::Error> {
    Ok(Option::<Direction>::deserialize(d)?.unwrap_or_default())
}

/// Which end of an over-long input `truncate` cuts (case-insensitive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ToSchema)]
pub enum Direction {
    Left,
    #[default]
    Right,
}

impl<'de> Deserialize<'de> for Direction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "left" => Ok(Direction::Left),
            "right" => Ok(Direction::Right),
            _ => Err(D::Error::custom(format!("truncation_direction must be \"Left\" or \"Right\", not {s:?}"))),
        }
    }
}

/// How inputs are cut and prefixed before they reach the model.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct EncodeOptions {
    /// Cut inputs longer than the model's maximum instead of refusing them (default: `--auto-truncate`).
    pub truncate: Option<bool>,
    /// Which end `truncate` cuts (`null` is the default, `Right`).
    #[serde(default, deserialize_with = "direction_or_null")]
    #[schema(value_type = Option<Direction>)]
    pub truncation_direction: Direction,
    /// A prompt of the model by name (`prompts` in `config_sentence_transformers.json`),
    /// resolved by the library: without it the model's `default_prompt_name` applies.
    pub prompt_name: Option<String>,
}

fn yes() -> bool {
    true
}

/// `POST /embed`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": ["What is Deep Learning?", "Paris"]}))]
pub struct EmbedRequest {
    #[schema(value_type = InputsSchema)]
    pub inputs: Inputs,
    /// L2-normalise (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub normalize: bool,
    /// Keep the first `dimensions` components (Matryoshka; default: the model's saved
    /// `truncate_dim`), then L2-normalise when `normalize`.
    pub dimensions: Option<usize>,
    #[serde(flatten)]
    pub options: EncodeOptions,
}

/// `POST /embed_all`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": ["What is Deep Learning?"]}))]
pub struct EmbedAllRequest {
    #[schema(value_type = InputsSchema)]
    pub inputs: Inputs,
    #[serde(flatten)]
    pub options: EncodeOptions,
}

/// `POST /predict`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": "I like you."}))]
pub struct PredictRequest {
    #[schema(value_type = PredictInputsSchema)]
    pub inputs: PredictInputs,
    /// Logits instead of probabilities.
    #[serde(default)]
    pub raw_scores: bool,
    #[serde(flatten)]
    pub options: EncodeOptions,
}

/// `POST /rerank`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"query": "What is Deep Learning?", "texts": ["Deep learning is...", "Paris"]}))]
pub struct RerankRequest {
    pub query: String,
    pub texts: Vec<String>,
    #[serde(default)]
    pub raw_scores: bool,
    #[serde(default)]
    pub return_text: bool,
    #[serde(flatten)]
    pub options: EncodeOptions,
}

/// `POST /similarity` (the Hugging Face sentence-similarity task shape).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": {"source_sentence": "a cat", "sentences": ["a kitten", "a car"]}}))]
pub struct SimilarityRequest {
    pub inputs: SimilarityInput,
    pub parameters: Option<EncodeOptions>,
}

/// The sentences of a similarity request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SimilarityInput {
    pub source_sentence: String,
    pub sentences: Vec<String>,
}

/// `POST /tokenize`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"inputs": "Hello World!"}))]
pub struct TokenizeRequest {
    #[schema(value_type = InputsSchema)]
    pub inputs: Inputs,
    #[serde(default = "yes")]
    pub add_special_tokens: bool,
    pub prompt_name: Option<String>,
}

/// `ids` of `/decode`: one list of ids or a list of lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdLists {
    pub items: Vec<Vec<u32>>,
}

impl<'de> Deserialize<'de> for IdLists {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = || D::Error::custom("ids must be a list of token ids or a list of such lists");
        match Value::deserialize(d)? {
            Value::Array(a) if a.iter().all(Value::is_number) => {
                Ok(Self { items: vec![parse_ids(&a).ok_or_else(bad)?] })
            }
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_array().and_then(|v| parse_ids(v)).ok_or_else(bad))
                .collect::<Result<_, _>>()
                .map(|items| Self { items }),
            _ => Err(bad()),
        }
    }
}

/// `POST /decode`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"ids": [50281, 12092, 3645, 2, 50282]}))]
pub struct DecodeRequest {
    #[schema(value_type = IdListsSchema)]
    pub ids: IdLists,
    #[serde(default = "yes")]
    pub skip_special_tokens: bool,
}

/// `encoding_format` of `/v1/embeddings`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    #[default]
    Float,
    /// Little-endian f32 bytes, base64-encoded.
    Base64,
}

/// `POST /v1/embeddings` (OpenAI).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"input": ["hello"], "model": "modernbert"}))]
pub struct OpenAiRequest {
    #[schema(value_type = InputsSchema)]
    pub input: Inputs,
    /// Accepted and echoed; the server has one model.
    pub model: Option<String>,
    pub user: Option<String>,
    #[serde(default)]
    pub encoding_format: EncodingFormat,
    /// Keep the first `dimensions` components; the result is always L2-normalised.
    pub dimensions: Option<usize>,
    /// Extension (not OpenAI's): a prompt of the model by name, as on `/embed`.
    pub prompt_name: Option<String>,
}

/// One class of a `/predict` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Prediction {
    pub score: f32,
    pub label: String,
}

/// One text of a `/rerank` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rank {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub score: f32,
}

/// One token of a `/tokenize` answer; `start`/`stop` are byte offsets into the text.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SimpleToken {
    pub id: u32,
    pub text: String,
    pub special: bool,
    pub start: Option<usize>,
    pub stop: Option<usize>,
}

/// `inputs`: a string, a list of token ids, or a list of strings or token-id lists (for the API
/// description; parsed by [`Inputs`]).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum InputsSchema {
    Text(String),
    Ids(Vec<u32>),
    Batch(Vec<InputSchema>),
}

/// One input: text, or token ids used as given.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum InputSchema {
    Text(String),
    Ids(Vec<u32>),
}

/// `/predict` inputs: a string, a pair `[a, b]`, or a batch `[[a], [a, b], ...]`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PredictInputsSchema {
    Text(String),
    Pair(Vec<String>),
    Batch(Vec<Vec<String>>),
}

/// `/decode` ids: a list of token ids or a list of such lists.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum IdListsSchema {
    Ids(Vec<u32>),
    Batch(Vec<Vec<u32>>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(json: &str) -> Result<Inputs, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn inputs_shapes() {
        assert_eq!(inputs(r#""a""#).unwrap(), Inputs { items: vec![Input::Text("a".into())], single: true });
        assert_eq!(inputs("[1, 2]").unwrap(), Inputs { items: vec![Input::Ids(vec![1, 2])], single: true });
        let batch = inputs(r#"["a", [3]]"#).unwrap();
        assert_eq!(batch.items, vec![Input::Text("a".into()), Input::Ids(vec![3])]);
        assert!(!batch.single);
        assert!(inputs("[]").unwrap().items.is_empty());
        assert!(inputs("3").unwrap_err().contains("inputs is a number"));
        assert!(inputs("[-1]").unwrap_err().contains("token ids"));
        assert!(inputs(r#"["a", {}]"#).unwrap_err().contains("input 1 is an object"));
    }

    #[test]
    fn predict_shapes() {
        let p = |s: &str| serde_json::from_str::<PredictInputs>(s).map_err(|e| e.to_string());
        assert_eq!(p(r#""a""#).unwrap().items, vec![("a".into(), None)]);
        let pair = p(r#"["a", "b"]"#).unwrap();
        assert!(pair.single && pair.items == vec![("a".into(), Some("b".into()))]);
        let batch = p(r#"[["a"], ["b", "c"]]"#).unwrap();
        assert!(!batch.single && batch.items.len() == 2);
        assert!(p(r#"["a", "b", "c"]"#).is_err());
        assert!(p(r#"[["a", "b", "c"]]"#).unwrap_err().contains("batch item 0"));
    }

    #[test]
    fn direction_is_case_insensitive() {
        let d: Direction = serde_json::from_str(r#""left""#).unwrap();
        assert_eq!(d, Direction::Left);
        assert!(serde_json::from_str::<Direction>(r#""up""#).is_err());
    }
}
