//! `modernbert finetune` and `modernbert evaluate`: thin wrappers over `modernbert_train::finetune`.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use modernbert::retrieval::RetrievalSet;
use modernbert_train::finetune::{self, evaluate, FinetuneConfig, Format, Task};
use std::path::PathBuf;

/// Fine-tuning subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Fine-tune a checkpoint into a classifier or tagger; writes an HF model directory.
    Finetune(Box<FinetuneArgs>),
    /// Metrics of a classifier or tagger (ours or HF's) on a labelled file.
    Evaluate(EvaluateArgs),
}

/// Arguments of `modernbert finetune` (each overrides the `--config` file; defaults: the GLUE recipe).
#[derive(Args)]
pub struct FinetuneArgs {
    /// Settings file (TOML) with the keys below (snake_case or kebab-case).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Continue a run exactly from its output directory or a checkpoint (its settings are used).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// classification | token-classification | embedding.
    #[arg(long)]
    pub task: Option<Task>,
    /// Start checkpoint: model directory or Hugging Face Hub id (default: $MODERNBERT_MODEL, else models/modernbert-mini).
    #[arg(long, short)]
    pub model: Option<String>,
    /// Training file: JSONL {"text", "text_pair"?, "label"}, CSV/TSV with a header; for token
    /// classification JSONL {"tokens", "tags"} / CoNLL; for embedding JSONL {"query", "positive",
    /// "negatives"?} (or {"anchor", "positive", "negative"?}).
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Validation file (default: a seeded 10% of the training file); for embedding also a BEIR
    /// directory (queries.jsonl, corpus.jsonl, qrels.tsv).
    #[arg(long)]
    pub validation: Option<PathBuf>,
    /// jsonl | csv | tsv | conll (default: from the file extension).
    #[arg(long)]
    pub format: Option<Format>,
    /// Output directory (an HF model directory at the end).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Sequences per optimizer step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Fill each step up to this many (unpadded) tokens instead of --batch-size sequences.
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
    /// Cut longer inputs to this many tokens (counted and reported).
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Fully decoupled weight decay (per step: w ← w·(1 − lr_t/lr · wd)).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Clip the global gradient norm (0: off).
    #[arg(long)]
    pub gradient_clip: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Evaluate every N steps (0: each epoch).
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Stop after N evaluations without improvement.
    #[arg(long)]
    pub early_stopping_patience: Option<usize>,
    /// cls | mean pooling of a sequence classifier (default: the checkpoint's).
    #[arg(long)]
    pub classifier_pooling: Option<String>,
    /// Stop after this many optimizer steps in total (a checkpoint is written there).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Embedding: `mean` or `cls` pooling.
    #[arg(long)]
    pub pooling: Option<String>,
    /// Embedding: scale of the cosine similarities in the InfoNCE loss (20).
    #[arg(long)]
    pub scale: Option<f64>,
    /// Embedding: also train these truncated widths (Matryoshka), e.g. 64,128.
    #[arg(long, value_delimiter = ',')]
    pub matryoshka_dims: Option<Vec<usize>>,
    /// Embedding: weight of the distillation loss (MSE to the rows' "teacher_vectors") beside InfoNCE.
    #[arg(long)]
    pub distill_weight: Option<f64>,
    /// Embedding: texts per forward pass with gradient caching (large batches in small memory).
    #[arg(long)]
    pub mini_batch_size: Option<usize>,
    /// Embedding: hard negatives per row (default: as many as every row has).
    #[arg(long)]
    pub hard_negatives: Option<usize>,
    /// Embedding: every step from one "source" of the data (sentence-transformers' multi-dataset batches).
    #[arg(long)]
    pub batch_by_source: bool,
    /// Embedding: prompt prepended to queries (saved as the model's "query" prompt).
    #[arg(long)]
    pub query_prompt: Option<String>,
    /// Embedding: prompt prepended to documents (saved as the model's "document" prompt).
    #[arg(long)]
    pub document_prompt: Option<String>,
    /// Arithmetic of the encoder's linear layers: f32 (default) or bf16 (mixed precision:
    /// bf16 operands, f32 sums and master weights; much faster with AVX512-BF16).
    #[arg(long)]
    pub precision: Option<modernbert::Precision>,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Arguments of `modernbert evaluate`.
#[derive(Args)]
pub struct EvaluateArgs {
    /// A classifier or tagger (or, with --task retrieval, an embedding, ColBERT or reranking
    /// model): model directory or Hugging Face Hub id.
    #[arg(long, short)]
    pub model: Option<String>,
    /// `classification` (classifiers and taggers, default) or `retrieval`.
    #[arg(long, default_value = "classification")]
    pub task: String,
    /// Labelled file, as for `modernbert finetune --train`.
    #[arg(long, required_unless_present_any = ["queries", "beir"])]
    pub data: Option<PathBuf>,
    /// Retrieval: queries JSONL ({"_id", "text"}).
    #[arg(long, requires_all = ["corpus", "qrels"])]
    pub queries: Option<PathBuf>,
    /// Retrieval: corpus JSONL ({"_id", "title"?, "text"}).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Retrieval: relevance TSV (query-id, corpus-id, score).
    #[arg(long)]
    pub qrels: Option<PathBuf>,
    /// Retrieval: a BEIR directory holding the three files.
    #[arg(long)]
    pub beir: Option<PathBuf>,
    #[arg(long)]
    pub format: Option<Format>,
    /// Cut longer inputs to this many tokens.
    #[arg(long, default_value_t = 8192)]
    pub max_length: usize,
    /// Arithmetic of the encoder's linear layers.
    #[arg(long, default_value = "f32")]
    pub precision: modernbert::Precision,
}

/// Runs a fine-tuning subcommand.
pub fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Finetune(a) => {
            let mut cfg = match &a.config {
                Some(path) => FinetuneConfig::from_toml(path)?,
                None => FinetuneConfig::default(),
            };
            macro_rules! set {
                ($($field:ident),*) => { $( if let Some(v) = a.$field.clone() { cfg.$field = v; } )* };
            }
            set!(task, train, output, epochs, learning_rate, batch_size, max_length, weight_decay, warmup_ratio);
            set!(gradient_clip, seed, eval_every);
            macro_rules! set_optional {
                ($($field:ident),*) => { $( if a.$field.is_some() { cfg.$field = a.$field.clone(); } )* };
            }
            set_optional!(validation, format, max_batch_tokens, early_stopping_patience, classifier_pooling, max_steps);
            set_optional!(pooling, matryoshka_dims, mini_batch_size, hard_negatives, query_prompt, document_prompt);
            set!(scale, distill_weight, precision);
            if a.batch_by_source {
                cfg.batch_by_source = true;
            }
            if let Some(m) = a.model {
                cfg.model = m;
            } else if cfg.model.is_empty() && a.resume.is_none() {
                cfg.model = crate::default_model().ok_or_else(|| anyhow::anyhow!(crate::NO_MODEL))?;
            }
            if a.resume.is_none() && a.train.is_none() && a.config.is_none() {
                bail!("give a training file (--train FILE), a settings file (--config), or a run to --resume");
            }
            crate::train::prepare_training_process();
            let s = finetune::finetune(cfg, a.resume.as_deref(), !a.no_progress)?;
            match &s.best {
                Some(b) => eprintln!(
                    "done: {} steps ({:.1} samples/s{}); best validation {} {:.4} (loss {:.4}) at step {}; model in {}",
                    s.steps,
                    s.samples_per_sec,
                    if s.stopped_early { ", stopped early" } else { "" },
                    s.metric_name,
                    b.metric,
                    b.loss,
                    b.step,
                    s.output.display()
                ),
                None => eprintln!("done: {} steps; model in {}", s.steps, s.output.display()),
            }
            if let Some(b) = s.best {
                println!(
                    "{}",
                    serde_json::json!({"step": b.step, "loss": b.loss, "metric": s.metric_name, "metrics": b.metrics,
                        "steps": s.steps, "samples_per_sec": s.samples_per_sec, "output": s.output})
                );
            }
            Ok(())
        }
        Commands::Evaluate(a) if a.task == "retrieval" => {
            let model = crate::load_embedder(a.model.as_deref(), a.precision)?;
            let set = match (&a.beir, &a.queries, &a.corpus, &a.qrels) {
                (Some(dir), _, _, _) => RetrievalSet::read_dir(dir)?,
                (None, Some(q), Some(c), Some(r)) => RetrievalSet::read(q, c, r)?,
                _ => bail!("--task retrieval needs --beir DIR, or --queries, --corpus and --qrels"),
            };
            let t0 = std::time::Instant::now();
            let m = modernbert::retrieval::evaluate(&model, &set, a.max_length)?;
            eprintln!(
                "{} queries over {} documents in {:.1} s: nDCG@10 {:.4}, MRR@10 {:.4}, Recall@10 {:.4}, Recall@100 {:.4}",
                m.queries,
                set.corpus.len(),
                t0.elapsed().as_secs_f64(),
                m.ndcg_at_10,
                m.mrr_at_10,
                m.recall_at_10,
                m.recall_at_100
            );
            println!("{}", serde_json::to_string(&m)?);
            Ok(())
        }
        Commands::Evaluate(a) => {
            if a.task != "classification" {
                bail!("--task {:?}: expected classification or retrieval", a.task);
            }
            let model = crate::load_model(a.model.as_deref(), a.precision)?;
            let data = a.data.as_deref().ok_or_else(|| anyhow::anyhow!("give the labelled file with --data"))?;
            let r = evaluate::evaluate_file(&model, data, a.format, a.max_length)?;
            if r.encoded.truncated > 0 {
                eprintln!(
                    "warning: {} examples were longer than {} tokens and were cut",
                    r.encoded.truncated, a.max_length
                );
            }
            let e = r.evaluation;
            eprintln!(
                "{}: {} {:.4}, loss {:.4} on {} examples",
                data.display(),
                e.metric_name,
                e.metric,
                e.loss,
                r.encoded.examples.len()
            );
            println!("{}", serde_json::json!({"loss": e.loss, "metric": e.metric_name, "metrics": e.metrics}));
            Ok(())
        }
    }
}
