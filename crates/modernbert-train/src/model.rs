//! A differentiable ModernBERT (spec §3) built on candle autograd, with a masked-LM or classifier
//! head — the library's heads ([`modernbert::heads`]), fed with this model's variables.
//!
//! Parameters are candle [`Var`]s named exactly like HF (`model.layers.{i}.attn.Wqkv.weight`, …,
//! `head.dense.weight`, `decoder.bias`, `classifier.weight`); an MLM decoder is tied to the token
//! embedding. The batch is
//! unpadded ([`MlmBatch`]): documents are concatenated, RoPE positions restart in every document,
//! attention never crosses a document boundary and local layers see `|i − j| ≤ local_attention/2`.
//!
//! Two implementations of the non-GEMM parts share this module (see [`Kernels`]):
//! * `Composed`: only differentiable candle primitives (LayerNorm from mean/var, rotate-half RoPE
//!   with cos/sin tables, dense per-chunk attention with an additive band/block mask, softmax from
//!   `exp`/`sum`, exact erf GELU). This is the reference the fused path is tested against.
//! * `Fused`: custom ops with hand-written backward passes ([`crate::ops`]), much faster on CPU.
//!
//! Fused `candle_nn` ops (`layer_norm`, `rope`, `softmax_last_dim`) are never used: they silently
//! have no gradient (framework notes §2.2).

use crate::blocks::{self, Residual};
use crate::ops;
use crate::params::{param_specs, HeadKind, ParamSpec, Params};
use crate::rng::Rng;
use crate::MlmBatch;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use modernbert::config::{Activation, LayerType};
use modernbert::heads::{ClassifierHead, MaskedLmHead};
use modernbert::model::nn::activate;
use modernbert::Config;
pub use modernbert_kernels::matmul::Arithmetic;
use modernbert_kernels::RopeTable;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Dropout probabilities used in training (inference never drops).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DropoutConfig {
    /// After the embedding LayerNorm (`embedding_dropout`).
    pub embedding: f32,
    /// After the attention output projection `Wo` (FlexBERT `attn_out_dropout_prob`, 0.1 in the paper).
    pub attn_out: f32,
    /// Between the GeGLU and the MLP `Wo` (`mlp_dropout`).
    pub mlp: f32,
    /// Between a classifier's prediction head and its output layer (`classifier_dropout`).
    pub classifier: f32,
}

impl Default for DropoutConfig {
    fn default() -> Self {
        Self { embedding: 0.0, attn_out: 0.1, mlp: 0.0, classifier: 0.0 }
    }
}

impl DropoutConfig {
    /// No dropout anywhere.
    pub fn none() -> Self {
        Self { embedding: 0.0, attn_out: 0.0, mlp: 0.0, classifier: 0.0 }
    }

    /// The dropouts a checkpoint's `config.json` names (`attention_dropout` is applied to the
    /// attention output, after `Wo`; the fused attention kernel does not drop probabilities).
    pub fn from_config(cfg: &Config) -> Self {
        let d = cfg.dropout;
        Self {
            embedding: d.embedding as f32,
            attn_out: d.attention as f32,
            mlp: d.mlp as f32,
            classifier: d.classifier as f32,
        }
    }
}

/// Which implementation of the non-GEMM ops the forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// Differentiable candle primitives only (reference).
    Composed,
    /// Fused CPU kernels with analytic backward passes (default).
    #[default]
    Fused,
}

/// Identifies one forward pass for dropout: masks are drawn from `Rng::keyed(seed, [step, micro, site])`.
#[derive(Debug, Clone, Copy)]
pub struct DropoutKey {
    /// Run seed.
    pub seed: u64,
    /// Optimizer step.
    pub step: u64,
    /// Micro-batch index inside the step.
    pub micro: u64,
}

/// Loss and counts of one masked-LM forward pass.
pub struct MlmOutput {
    /// Mean cross-entropy over the predicted tokens (a scalar with a gradient graph).
    pub loss: Tensor,
    /// Number of predicted (label ≠ −100) tokens.
    pub num_predicted: usize,
    /// How many of them the arg-max prediction gets right.
    pub correct: usize,
}

/// RoPE for one θ: the table (fused path) and, for the composed path, cos/sin for every token
/// of the batch with positions restarting per document, `[T, 1, d]` each.
struct Rope {
    table: Arc<RopeTable>,
    cos: Option<Tensor>,
    sin: Option<Tensor>,
}

/// Host-side preparation shared by all layers of one forward pass.
struct Prepared {
    token_ids: Vec<u32>,
    cu_seqlens: Vec<u32>,
    global: Rope,
    local: Rope,
    /// Composed attention: chunks of whole documents with their additive masks.
    chunks: Vec<Chunk>,
    /// Attention from differentiable primitives (the composed kernels, or key limits).
    composed: bool,
}

struct Chunk {
    start: usize,
    len: usize,
    global_mask: Tensor,
    local_mask: Tensor,
}

/// The differentiable ModernBERT with its task head (masked LM, sequence or token classifier).
pub struct TrainModel {
    config: Config,
    head: HeadKind,
    vars: BTreeMap<String, Var>,
    /// Trainable tensors outside the HF parameter table (e.g. a ColBERT model's Dense).
    extra: Vec<String>,
    kernels: Kernels,
    /// Arithmetic of the fused blocks' linear layers (f32 by default).
    arithmetic: Arithmetic,
    /// Row-sparse embedding lookups waiting for their gradient (`None`: dense lookups).
    row_lookups: Option<Mutex<Vec<RowLookup>>>,
    device: Device,
}

/// Name of the token embedding.
pub const TOKEN_EMBEDDING: &str = "model.embeddings.tok_embeddings.weight";

/// Rows of the token embedding one forward pass looked up row-sparsely: a leaf variable holding
/// copies of them, whose gradient is the embedding's gradient on those rows.
struct RowLookup {
    ids: Vec<u32>,
    rows: Var,
}

/// Large finite negative used for masked attention scores (−inf would make NaNs, spec G1).
const MASKED: f32 = -1.0e30;
/// Composed attention groups consecutive documents into chunks of about this many tokens.
const CHUNK_TOKENS: usize = 512;

impl TrainModel {
    /// Wraps named tensors (every name of [`param_specs`], shapes checked) as trainable variables.
    /// The head is `config.architecture`'s, else guessed from the tensors.
    pub fn from_tensors(config: Config, tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        let device = Device::Cpu;
        let head = HeadKind::of(&config, |n| tensors.contains_key(n))?;
        let mut vars = BTreeMap::new();
        for ParamSpec { name, shape, .. } in param_specs(&config, head) {
            let t = tensors.get(&name).with_context(|| format!("missing parameter `{name}`"))?;
            if t.dims() != shape.as_slice() {
                bail!("parameter `{name}` has shape {:?}, expected {shape:?}", t.dims());
            }
            vars.insert(name, Var::from_tensor(&t.to_dtype(DType::F32)?.contiguous()?)?);
        }
        if head == HeadKind::MaskedLm && !config.tie_word_embeddings {
            bail!("training a masked LM needs tie_word_embeddings = true (the decoder is the token embedding)");
        }
        Ok(Self {
            config,
            head,
            vars,
            extra: Vec::new(),
            kernels: Kernels::default(),
            arithmetic: Arithmetic::F32,
            row_lookups: None,
            device,
        })
    }

    /// Loads a checkpoint directory (config.json + safetensors) with the head it carries.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = Config::from_file(&dir.join("config.json"))?;
        let w = modernbert::weights::Weights::from_dir(dir, &Device::Cpu)?;
        let head = HeadKind::of(&config, |n| w.contains(n))?;
        let tensors = read_params(&w, &param_specs(&config, head))?;
        Self::from_tensors(config, &tensors)
    }

    /// The task head.
    pub fn head(&self) -> HeadKind {
        self.head
    }

    /// Adds a trainable tensor outside the HF parameter table (written by its task, not with
    /// the transformer's weights).
    pub fn add_param(&mut self, name: &str, value: &Tensor) -> Result<()> {
        if self.vars.contains_key(name) {
            bail!("parameter `{name}` exists already");
        }
        self.vars.insert(name.to_string(), Var::from_tensor(&value.to_dtype(DType::F32)?.contiguous()?)?);
        self.extra.push(name.to_string());
        Ok(())
    }

    /// Whether `name` is a tensor added with [`TrainModel::add_param`].
    pub fn is_extra(&self, name: &str) -> bool {
        self.extra.iter().any(|e| e == name)
    }

    /// Sets the `problem_type` written with the model (a reranker's single output has none).
    pub fn set_problem_type(&mut self, problem_type: Option<modernbert::ProblemType>) {
        self.config.problem_type = problem_type;
    }

    /// Selects the op implementation (builder style).
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// Selects the arithmetic of the fused blocks' linear layers (builder style): bf16 operands
    /// with `f32` sums and `f32` master weights, or `f32` throughout.
    pub fn with_arithmetic(mut self, arithmetic: Arithmetic) -> Self {
        self.arithmetic = arithmetic;
        self
    }

    /// Looks the token embedding up row-sparsely (builder style; not for a masked LM, whose tied
    /// decoder reads the whole embedding): each forward pass copies the rows its tokens use into a
    /// small leaf variable, so its gradient is those rows instead of a `[vocab, hidden]` tensor.
    /// [`crate::grads::accumulate`] collects them; call [`Self::forget_row_lookups`] after a step.
    pub fn with_row_sparse_embedding(mut self) -> Self {
        if self.head != HeadKind::MaskedLm {
            self.row_lookups = Some(Mutex::new(Vec::new()));
        }
        self
    }

    /// Takes the row-sparse lookups whose rows got a gradient in `store`: `(row ids, gradient)`.
    /// Lookups without one (forward passes not yet, or never, backpropagated) stay.
    pub fn claim_row_lookups(&self, store: &candle_core::backprop::GradStore) -> Vec<(Vec<u32>, Tensor)> {
        let Some(lookups) = &self.row_lookups else { return Vec::new() };
        let mut lookups = lookups.lock().unwrap_or_else(|e| e.into_inner());
        let mut claimed = Vec::new();
        lookups.retain(|l| match store.get(l.rows.as_tensor()) {
            Some(g) => {
                claimed.push((l.ids.clone(), g.clone()));
                false
            }
            None => true,
        });
        claimed
    }

    /// Drops the row-sparse lookups no backward pass claimed (the end of a step).
    pub fn forget_row_lookups(&self) {
        if let Some(lookups) = &self.row_lookups {
            lookups.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// The token embeddings of `ids` (`[T, hidden]`), dense or row-sparse.
    fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let weight = self.p(TOKEN_EMBEDDING)?;
        let Some(lookups) = &self.row_lookups else {
            return Ok(weight.index_select(&Tensor::new(ids, &self.device)?, 0)?);
        };
        let mut used = ids.to_vec();
        used.sort_unstable();
        used.dedup();
        let local: Vec<u32> = ids.iter().map(|id| used.binary_search(id).unwrap_or(0) as u32).collect();
        let rows = Var::from_tensor(&weight.index_select(&Tensor::new(used.as_slice(), &self.device)?, 0)?)?;
        let emb = rows.as_tensor().index_select(&Tensor::from_vec(local, ids.len(), &self.device)?, 0)?;
        lookups.lock().unwrap_or_else(|e| e.into_inner()).push(RowLookup { ids: used, rows });
        Ok(emb)
    }

    /// The op implementation in use.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// The model configuration (RoPE θ may be changed between phases with [`Self::set_rope_theta`]).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets the RoPE bases of global and local layers (context extension changes them).
    pub fn set_rope_theta(&mut self, global: f64, local: f64) {
        self.config.global_rope_theta = global;
        self.config.local_rope_theta = local;
    }

    /// The trainable variables by HF name.
    pub fn vars(&self) -> &BTreeMap<String, Var> {
        &self.vars
    }

    /// One variable by HF name.
    pub fn var(&self, name: &str) -> Result<&Var> {
        self.vars.get(name).with_context(|| format!("no parameter `{name}`"))
    }

    fn p(&self, name: &str) -> Result<&Tensor> {
        Ok(self.var(name)?.as_tensor())
    }

    fn p_opt(&self, name: &str) -> Option<&Tensor> {
        self.vars.get(name).map(|v| v.as_tensor())
    }

    /// The variables as a [`Params`] provider for the library's heads.
    fn params(&self) -> VarParams<'_> {
        VarParams(&self.vars)
    }

    /// Current parameter values as independent copies (a `Var` is updated in place).
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.vars.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?.detach()))).collect()
    }

    /// An inference [`modernbert::Model`] (f32, no tokenizer) holding copies of the current values:
    /// evaluation runs the library's inference path, exactly what the exported model will run.
    pub fn to_inference(&self) -> Result<modernbert::Model> {
        let tensors: std::collections::HashMap<String, Tensor> = self.tensors()?.into_iter().collect();
        let weights = modernbert::weights::Weights::from_tensors(tensors, &self.device)?;
        let mut config = self.config.clone();
        config.architecture = Some(self.head.architecture().into());
        Ok(modernbert::Model::from_weights(config, &weights, None, Path::new(""), modernbert::Precision::F32)?)
    }

    fn prepare(&self, input_ids: &[u32], cu_seqlens: &[u32], key_limits: Option<&[u32]>) -> Result<Prepared> {
        let n = input_ids.len();
        if cu_seqlens.first() != Some(&0) || cu_seqlens.last().map(|&e| e as usize) != Some(n) {
            bail!("cu_seqlens {:?} does not cover {n} tokens", short(cu_seqlens));
        }
        if cu_seqlens.windows(2).any(|w| w[1] <= w[0]) {
            bail!("cu_seqlens must be strictly increasing (no empty documents)");
        }
        let vocab = self.config.vocab_size as u32;
        if let Some(bad) = input_ids.iter().find(|&&id| id >= vocab) {
            bail!("token id {bad} is outside the vocabulary of {vocab}");
        }
        let mut positions = Vec::with_capacity(n);
        for w in cu_seqlens.windows(2) {
            positions.extend(0..w[1] - w[0]);
        }
        let max_pos = *positions.iter().max().unwrap_or(&0) as usize;
        if max_pos >= self.config.max_position_embeddings {
            bail!("a document has {} tokens, more than max_position_embeddings", max_pos + 1);
        }
        let d = self.config.head_dim();
        if key_limits.is_some_and(|k| k.len() != cu_seqlens.len() - 1) {
            bail!("one key limit per sequence is needed");
        }
        let composed = self.kernels == Kernels::Composed || key_limits.is_some();
        let rope = |theta: f64| rope_tables(theta, d, max_pos + 1, composed.then_some(&positions[..]), &self.device);
        let global = rope(self.config.global_rope_theta)?;
        let local = rope(self.config.local_rope_theta)?;
        let chunks = if composed { self.chunks(cu_seqlens, key_limits)? } else { Vec::new() };
        Ok(Prepared { token_ids: input_ids.to_vec(), cu_seqlens: cu_seqlens.to_vec(), global, local, chunks, composed })
    }

    /// Groups whole documents into chunks and builds each chunk's additive masks `[n, n]`; with
    /// `key_limits`, the tokens of document `b` attend only to its first `key_limits[b]` tokens.
    fn chunks(&self, cu: &[u32], key_limits: Option<&[u32]>) -> Result<Vec<Chunk>> {
        let half = (self.config.local_attention / 2) as i64;
        let mut out = Vec::new();
        let mut b = 0;
        let docs = cu.len() - 1;
        while b < docs {
            let start = cu[b] as usize;
            let mut e = b + 1;
            while e < docs && (cu[e + 1] as usize - start) <= CHUNK_TOKENS {
                e += 1;
            }
            let len = cu[e] as usize - start;
            let mut doc = vec![0u32; len];
            let mut key_end = vec![0usize; len];
            for (k, w) in cu[b..=e].windows(2).enumerate() {
                let (s0, s1) = (w[0] as usize - start, w[1] as usize - start);
                doc[s0..s1].fill(k as u32);
                let keys = key_limits.map_or(s1 - s0, |l| (l[b + k] as usize).min(s1 - s0));
                key_end[s0..s1].fill(s0 + keys);
            }
            let mut global = vec![MASKED; len * len];
            let mut local = vec![MASKED; len * len];
            for i in 0..len {
                for j in 0..len {
                    if doc[i] == doc[j] && j < key_end[i] {
                        global[i * len + j] = 0.0;
                        if (i as i64 - j as i64).abs() <= half {
                            local[i * len + j] = 0.0;
                        }
                    }
                }
            }
            out.push(Chunk {
                start,
                len,
                global_mask: Tensor::from_vec(global, (len, len), &self.device)?,
                local_mask: Tensor::from_vec(local, (len, len), &self.device)?,
            });
            b = e;
        }
        Ok(out)
    }

    /// Runs the encoder: `[T]` ids → `[T, hidden]` after `final_norm`.
    pub fn forward_hidden(
        &self,
        input_ids: &[u32],
        cu_seqlens: &[u32],
        dropout: Option<(DropoutConfig, DropoutKey)>,
    ) -> Result<Tensor> {
        let prep = self.prepare(input_ids, cu_seqlens, None)?;
        self.encode(&prep, dropout)
    }

    /// [`TrainModel::forward_hidden`] where the tokens of sequence `b` attend only to its first
    /// `key_limits[b]` tokens (ColBERT's expanded queries), through the composed attention.
    pub fn forward_hidden_with_key_limits(
        &self,
        input_ids: &[u32],
        cu_seqlens: &[u32],
        key_limits: &[u32],
        dropout: Option<(DropoutConfig, DropoutKey)>,
    ) -> Result<Tensor> {
        let prep = self.prepare(input_ids, cu_seqlens, Some(key_limits))?;
        self.encode(&prep, dropout)
    }

    fn encode(&self, prep: &Prepared, dropout: Option<(DropoutConfig, DropoutKey)>) -> Result<Tensor> {
        let cfg = &self.config;
        let drop = |x: Tensor, p: f32, site: u64| -> Result<Tensor> {
            match dropout {
                Some((_, key)) if p > 0.0 => apply_dropout(&x, p, key, site),
                _ => Ok(x),
            }
        };
        let dc = dropout.map(|d| d.0).unwrap_or_else(DropoutConfig::none);
        let emb = self.embed(&prep.token_ids)?;
        let mut h = self.norm(&emb, "model.embeddings.norm")?;
        h = drop(h, dc.embedding, 0)?;
        // Whole residual sub-layers as single ops (crate::blocks) where the layer has no biases.
        let sublayers = !prep.composed
            && self.kernels == Kernels::Fused
            && !cfg.attention_bias
            && !cfg.mlp_bias
            && !cfg.norm_bias
            && cfg.hidden_activation == Activation::Gelu;
        for l in 0..cfg.num_hidden_layers {
            if sublayers {
                h = self.fused_layer(&h, l, prep, dropout)?;
                continue;
            }
            let p = format!("model.layers.{l}");
            let a = if l == 0 { h.clone() } else { self.norm(&h, &format!("{p}.attn_norm"))? };
            let attn = self.attention(&a, l, prep)?;
            let attn = drop(attn, dc.attn_out, 1 + 2 * l as u64)?;
            h = (h + attn)?;
            let m = self.norm(&h, &format!("{p}.mlp_norm"))?;
            let wi = self.linear(&m, &format!("{p}.mlp.Wi"))?;
            let gated = self.glu(&wi)?;
            let gated = drop(gated, dc.mlp, 2 + 2 * l as u64)?;
            h = (h + self.linear(&gated, &format!("{p}.mlp.Wo"))?)?;
        }
        self.norm(&h, "model.final_norm")
    }

    /// Layer `l` as two fused residual sub-layers ([`crate::blocks`]), the LayerNorm weights
    /// folded into the input projections.
    fn fused_layer(
        &self,
        h: &Tensor,
        l: usize,
        prep: &Prepared,
        dropout: Option<(DropoutConfig, DropoutKey)>,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let p = format!("model.layers.{l}");
        let dc = dropout.map(|d| d.0).unwrap_or_else(DropoutConfig::none);
        let eps = cfg.norm_eps as f32;
        let folded = |w_in: &str, norm: &str| -> Result<Tensor> {
            blocks::fold_norm_weight(self.p(&format!("{p}.{w_in}.weight"))?, self.p(&format!("{p}.{norm}.weight"))?)
        };
        let mask = |p: f32, n: usize, site: u64| match dropout {
            Some((_, key)) if p > 0.0 => Some(Arc::new(dropout_mask(n, p, key, site))),
            _ => None,
        };
        let local = cfg.layer_types[l] == LayerType::Local;
        let rope = if local { &prep.local } else { &prep.global };
        let attn = ops::AttentionOp::new(
            &prep.cu_seqlens,
            cfg.num_attention_heads,
            cfg.head_dim(),
            rope.table.clone(),
            local.then_some(cfg.local_attention / 2),
        );
        // Layer 0's attention norm is the identity.
        let (wqkv, norm_eps) = match l {
            0 => (self.p(&format!("{p}.attn.Wqkv.weight"))?.clone(), None),
            _ => (folded("attn.Wqkv", "attn_norm")?, Some(eps)),
        };
        let residual = Residual { norm_eps, out_mask: mask(dc.attn_out, h.elem_count(), 1 + 2 * l as u64) };
        let wo = self.p(&format!("{p}.attn.Wo.weight"))?;
        let h = blocks::attention_sublayer(h, &wqkv, wo, attn, residual, self.arithmetic)?;
        let geglu_mask = mask(dc.mlp, h.dim(0)? * cfg.intermediate_size, 2 + 2 * l as u64);
        let residual = Residual { norm_eps: Some(eps), out_mask: None };
        let wo = self.p(&format!("{p}.mlp.Wo.weight"))?;
        blocks::mlp_sublayer(&h, &folded("mlp.Wi", "mlp_norm")?, wo, geglu_mask, residual, self.arithmetic)
    }

    fn linear(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let y = x.matmul(&self.p(&format!("{name}.weight"))?.t()?)?;
        Ok(match self.p_opt(&format!("{name}.bias")) {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    fn norm(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let w = self.p(&format!("{name}.weight"))?;
        let y = match self.kernels {
            Kernels::Composed => layer_norm_composed(x, w, self.config.norm_eps)?,
            Kernels::Fused => ops::layer_norm(x, w, self.config.norm_eps as f32)?,
        };
        Ok(match self.p_opt(&format!("{name}.bias")) {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    fn glu(&self, wi: &Tensor) -> Result<Tensor> {
        let inter = self.config.intermediate_size;
        match (self.kernels, self.config.hidden_activation) {
            (Kernels::Fused, Activation::Gelu) => ops::geglu(wi),
            (_, act) => {
                let u = wi.narrow(D::Minus1, 0, inter)?;
                let g = wi.narrow(D::Minus1, inter, inter)?;
                Ok((activate(act, &u)? * g)?)
            }
        }
    }

    fn attention(&self, a: &Tensor, layer: usize, prep: &Prepared) -> Result<Tensor> {
        let cfg = &self.config;
        let (h, d) = (cfg.num_attention_heads, cfg.head_dim());
        let p = format!("model.layers.{layer}.attn");
        let qkv = self.linear(a, &format!("{p}.Wqkv"))?;
        let local = cfg.layer_types[layer] == LayerType::Local;
        let rope = if local { &prep.local } else { &prep.global };
        let out = match prep.composed {
            false => {
                let window = local.then_some(cfg.local_attention / 2);
                ops::attention(&qkv, &prep.cu_seqlens, h, d, rope.table.clone(), window)?
            }
            true => {
                let t = qkv.dim(0)?;
                let qkv = qkv.reshape((t, 3, h, d))?;
                let q = rotary(&qkv.narrow(1, 0, 1)?.squeeze(1)?, rope)?;
                let k = rotary(&qkv.narrow(1, 1, 1)?.squeeze(1)?, rope)?;
                let v = qkv.narrow(1, 2, 1)?.squeeze(1)?;
                let scale = (d as f64).powf(-0.5);
                let mut outs = Vec::with_capacity(prep.chunks.len());
                for c in &prep.chunks {
                    let qc = q.narrow(0, c.start, c.len)?.transpose(0, 1)?.contiguous()?;
                    let kc = k.narrow(0, c.start, c.len)?.transpose(0, 1)?.contiguous()?;
                    let vc = v.narrow(0, c.start, c.len)?.transpose(0, 1)?.contiguous()?;
                    let mask = if local { &c.local_mask } else { &c.global_mask };
                    let scores = (qc.matmul(&kc.t()?)? * scale)?.broadcast_add(mask)?;
                    let probs = softmax_composed(&scores)?;
                    let o = probs.matmul(&vc)?.transpose(0, 1)?.reshape((c.len, h * d))?;
                    outs.push(o);
                }
                Tensor::cat(&outs, 0)?
            }
        };
        self.linear(&out, &format!("{p}.Wo"))
    }

    /// The masked-LM head (the library's, on this model's variables).
    fn mlm_head(&self) -> Result<MaskedLmHead> {
        if self.head != HeadKind::MaskedLm {
            bail!("this model has a {} head, not a masked-LM head", self.head.architecture());
        }
        Ok(MaskedLmHead::load(&self.params(), &self.config, self.p(TOKEN_EMBEDDING)?)?)
    }

    /// MLM logits `[rows, vocab]` for hidden rows `[rows, hidden]` (prediction head + tied decoder).
    pub fn mlm_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.mlm_head()?.forward(hidden)?)
    }

    /// Sentence embeddings `[sequences, hidden]`: the encoder's states pooled (`cls` or `mean`),
    /// as the library's pooling computes them for inference.
    pub fn pooled(
        &self,
        input_ids: &[u32],
        cu_seqlens: &[u32],
        dropout: Option<(DropoutConfig, DropoutKey)>,
        pooling: modernbert::Pooling,
    ) -> Result<Tensor> {
        let hidden = self.forward_hidden(input_ids, cu_seqlens, dropout)?;
        Ok(modernbert::pooling::pool(&hidden, cu_seqlens, pooling)?)
    }

    /// Classifier logits: `[sequences, labels]` for a sequence classifier, `[tokens, labels]`
    /// for a token classifier, with `classifier_dropout` (and the backbone's dropouts) in training.
    pub fn classifier_logits(
        &self,
        input_ids: &[u32],
        cu_seqlens: &[u32],
        dropout: Option<(DropoutConfig, DropoutKey)>,
    ) -> Result<Tensor> {
        if !self.head.is_classifier() {
            bail!("this model has a {} head, not a classifier", self.head.architecture());
        }
        let head = ClassifierHead::load(&self.params(), &self.config)?;
        let hidden = self.forward_hidden(input_ids, cu_seqlens, dropout)?;
        let features = match self.head {
            HeadKind::SequenceClassification => head.sequence_features(&hidden, cu_seqlens)?,
            _ => head.token_features(&hidden)?,
        };
        let features = match dropout {
            Some((d, key)) if d.classifier > 0.0 => {
                apply_dropout(&features, d.classifier, key, 1 + 2 * self.config.num_hidden_layers as u64)?
            }
            _ => features,
        };
        Ok(head.classify(&features)?)
    }

    /// Masked-LM loss with sparse prediction: the head and decoder run only on rows whose label is
    /// not −100; the loss is the mean cross-entropy over those rows.
    pub fn mlm_loss(&self, batch: &MlmBatch, dropout: Option<(DropoutConfig, DropoutKey)>) -> Result<MlmOutput> {
        if batch.labels.len() != batch.input_ids.len() {
            bail!("{} labels for {} tokens", batch.labels.len(), batch.input_ids.len());
        }
        let (rows, targets): (Vec<u32>, Vec<u32>) =
            batch.labels.iter().enumerate().filter(|(_, &l)| l != -100).map(|(i, &l)| (i as u32, l as u32)).unzip();
        if rows.is_empty() {
            bail!("the batch has no predicted tokens (every label is -100)");
        }
        if let Some(bad) = targets.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            bail!("label {bad} is outside the vocabulary");
        }
        let hidden = self.forward_hidden(&batch.input_ids, &batch.cu_seqlens, dropout)?;
        let m = rows.len();
        let sel = hidden.index_select(&Tensor::from_vec(rows, m, &self.device)?, 0)?;
        let (loss, correct) = match self.kernels {
            Kernels::Fused => {
                let head = self.mlm_head()?;
                ops::cross_entropy(&head.logits_without_bias(&sel)?, head.bias(), &targets)?
            }
            Kernels::Composed => {
                let logits = self.mlm_logits(&sel)?;
                let loss = (crate::losses::cross_entropy_sum(&logits, &targets)? / m as f64)?;
                let pred = logits.detach().argmax(D::Minus1)?.to_vec1::<u32>()?;
                (loss, pred.iter().zip(&targets).filter(|(a, b)| a == b).count())
            }
        };
        Ok(MlmOutput { loss, num_predicted: m, correct })
    }
}

/// Trainable variables as the library's parameter provider.
struct VarParams<'a>(&'a BTreeMap<String, Var>);

impl Params for VarParams<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> modernbert::Result<Tensor> {
        let v = self.0.get(name).ok_or_else(|| modernbert::Error::Weights(format!("no parameter `{name}`")))?;
        if v.dims() != shape {
            return Err(modernbert::Error::Weights(format!(
                "parameter `{name}` has shape {:?}, expected {shape:?}",
                v.dims()
            )));
        }
        Ok(v.as_tensor().clone())
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

fn short(v: &[u32]) -> String {
    if v.len() <= 8 {
        format!("{v:?}")
    } else {
        format!("[{}, {}, .., {}] ({} entries)", v[0], v[1], v[v.len() - 1], v.len())
    }
}

/// Reads every parameter of a masked-LM checkpoint directory by its full HF name.
pub fn load_checkpoint_tensors(dir: &Path, config: &Config) -> Result<BTreeMap<String, Tensor>> {
    let w = modernbert::weights::Weights::from_dir(dir, &Device::Cpu)?;
    read_params(&w, &param_specs(config, HeadKind::MaskedLm))
}

/// Reads `specs` from a parameter provider (checked shapes).
pub fn read_params(p: &dyn Params, specs: &[ParamSpec]) -> Result<BTreeMap<String, Tensor>> {
    specs.iter().map(|s| Ok((s.name.clone(), p.tensor(&s.name, &s.shape)?))).collect()
}

/// RoPE for base `theta` up to `max_positions`, computed like HF (`inv_freq` and angles in f32);
/// with `positions`, also the per-token `[T, 1, d]` cos/sin tensors of the composed path.
fn rope_tables(
    theta: f64,
    head_dim: usize,
    max_positions: usize,
    positions: Option<&[u32]>,
    device: &Device,
) -> Result<Rope> {
    let table = Arc::new(RopeTable::new(theta as f32, head_dim, max_positions));
    let (mut cos_t, mut sin_t) = (None, None);
    if let Some(positions) = positions {
        let n = positions.len();
        let mut cos = Vec::with_capacity(n * head_dim);
        let mut sin = Vec::with_capacity(n * head_dim);
        for &p in positions {
            let (c, s) = table.row(p as usize);
            for _ in 0..2 {
                cos.extend_from_slice(c);
                sin.extend_from_slice(s);
            }
        }
        cos_t = Some(Tensor::from_vec(cos, (n, 1, head_dim), device)?);
        sin_t = Some(Tensor::from_vec(sin, (n, 1, head_dim), device)?);
    }
    Ok(Rope { table, cos: cos_t, sin: sin_t })
}

/// `x·cos + rotate_half(x)·sin` on `[T, H, d]`.
fn rotary(x: &Tensor, rope: &Rope) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    let (cos, sin) = rope.cos.as_ref().zip(rope.sin.as_ref()).context("composed RoPE tables missing")?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

/// Bias-free LayerNorm from differentiable primitives (biased variance, eps inside the sqrt).
pub fn layer_norm_composed(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let y = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(y.broadcast_mul(weight)?)
}

/// Softmax over the last dimension from `exp`/`sum` (the max shift carries no gradient, as it cancels).
pub fn softmax_composed(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Inverted dropout with a mask drawn from the stateless stream `(seed, step, micro, site)`.
fn apply_dropout(x: &Tensor, p: f32, key: DropoutKey, site: u64) -> Result<Tensor> {
    let mask = Tensor::from_vec(dropout_mask(x.elem_count(), p, key, site), x.shape(), x.device())?;
    Ok((x * mask)?)
}

/// `n` inverted-dropout multipliers (0 or 1/(1−p)) from the stream `(seed, step, micro, site)`.
fn dropout_mask(n: usize, p: f32, key: DropoutKey, site: u64) -> Vec<f32> {
    let mut rng = Rng::keyed(key.seed, &[key.step, key.micro, site]);
    let keep = 1.0 / (1.0 - p);
    let threshold = (p as f64 * 4_294_967_296.0) as u64;
    let mut mask = Vec::with_capacity(n);
    while mask.len() < n {
        let r = rng.next_u64();
        for half in [r & 0xFFFF_FFFF, r >> 32] {
            if mask.len() < n {
                mask.push(if half < threshold { 0.0 } else { keep });
            }
        }
    }
    mask
}
