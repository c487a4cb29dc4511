//! The training loop (nanoGPT-style: one visible loop, every knob in [`RunConfig`]).
//!
//! Per optimizer step: ask the data source for `rows` packed rows (batch-size warmup decides how
//! many), run forward/backward on each row (gradient accumulation; each row's mean loss is
//! weighted by its share of the step's predicted tokens, so the step optimizes the mean
//! cross-entropy over all of them), check the loss and gradient are finite, take a StableAdamW
//! step at the scheduled LR, log, and periodically evaluate and checkpoint. Phases run in order;
//! a new phase resets the schedule clock, sets its RoPE θ and opens its data source.

use crate::checkpoint::{self, CheckpointParts, TrainerState};
use crate::config::{Phase, RunConfig};
use crate::data::shards::{Manifest, ShardSet, Split};
use crate::data::{BatchSource, MaskingConfig, SourceConfig};
use crate::init::{init_params, tile_model, InitConfig};
use crate::model::{load_checkpoint_tensors, DropoutKey, TrainModel};
use crate::optim::AdamW;
use crate::rng::Rng;
use crate::st::HostTensor;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use modernbert::Config;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Command-line overrides of a run.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from this checkpoint (or run directory).
    pub resume: Option<PathBuf>,
    /// Stop after this many steps (overrides `[train] max_steps`).
    pub max_steps: Option<u64>,
    /// Force the progress bar on or off.
    pub progress: Option<bool>,
    /// Append every step's micro-batches to this JSONL file (for `bench/train_throughput.py`).
    pub dump_batches: Option<PathBuf>,
    /// Start afresh in a run directory that already holds checkpoints (deleting them).
    pub overwrite: bool,
}

/// Held-out masked-LM metrics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Eval {
    /// Mean cross-entropy over predicted tokens.
    pub loss: f64,
    /// Fraction of predicted tokens whose arg-max is right.
    pub accuracy: f64,
    /// Number of predicted tokens.
    pub predicted: usize,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Optimizer steps done in total.
    pub steps: u64,
    /// Tokens trained on in total.
    pub tokens: u64,
    /// Training loss of the last step.
    pub last_loss: f64,
    /// Held-out metrics at the start of this invocation and at the end.
    pub eval_start: Option<Eval>,
    /// See `eval_start`.
    pub eval_end: Option<Eval>,
    /// Tokens per second of this invocation (training steps only).
    pub tokens_per_sec: f64,
    /// Packing efficiency of this invocation's steps (real tokens / row capacity).
    pub packing_efficiency: f64,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

/// Builds the model a fresh run starts from (init, `init_from` or `tile_from`).
pub fn initial_model(run: &RunConfig, manifest: Option<&Manifest>) -> Result<TrainModel> {
    let m = &run.model;
    let init = InitConfig { initializer_range: m.initializer_range, cutoff: m.initializer_cutoff_factor };
    let model = if let Some(dir) = &m.init_from {
        TrainModel::load(dir).with_context(|| format!("init_from {}", dir.display()))?
    } else {
        let mut config = model_config(run)?;
        if let Some(man) = manifest {
            config.pad_token_id = man.tokenizer.pad_id;
            config.cls_token_id = man.tokenizer.cls_id;
            config.sep_token_id = man.tokenizer.sep_id;
        }
        let params: BTreeMap<String, HostTensor> = match &m.tile_from {
            Some(dir) => {
                let small_cfg = Config::from_file(&dir.join("config.json"))?;
                let small = load_checkpoint_tensors(dir, &small_cfg)?
                    .into_iter()
                    .map(|(n, t)| Ok((n, HostTensor { shape: t.dims().to_vec(), data: t.flatten_all()?.to_vec1()? })))
                    .collect::<Result<_>>()?;
                tile_model(&small_cfg, &small, &config, &init, run.seed)?
            }
            None => init_params(&config, &init, run.seed),
        };
        let tensors = params
            .into_iter()
            .map(|(n, t)| Ok((n, Tensor::from_vec(t.data, t.shape, &Device::Cpu)?)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        TrainModel::from_tensors(config, &tensors)?
    };
    Ok(model.with_kernels(m.kernels))
}

/// The architecture of a fresh model from `[model] config` / `config_file`.
pub fn model_config(run: &RunConfig) -> Result<Config> {
    let mut map = match (&run.model.config, &run.model.config_file) {
        (Some(c), _) => c.clone(),
        (None, Some(f)) => {
            serde_json::from_str(&std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?)?
        }
        (None, None) => bail!("[model] has no config"),
    };
    map.entry("model_type").or_insert(json!("modernbert"));
    Ok(Config::from_json(&serde_json::Value::Object(map).to_string())?)
}

fn source_config(run: &RunConfig, index: usize, phase: &Phase, split: Split) -> SourceConfig {
    let train = split == Split::Train;
    SourceConfig {
        split,
        max_seq_len: phase.max_seq_len,
        row_tokens: phase.row_tokens(&run.data),
        rows_per_step: phase.rows_per_step,
        seed: if train { Rng::keyed(run.seed, &[0xDA7A, index as u64]).next_u64() } else { 0 },
        masking: MaskingConfig::with_probability(if train {
            run.data.mlm_probability
        } else {
            run.data.eval_mlm_probability
        }),
        shuffle: train,
        repeat: train,
        buffer_factor: run.data.buffer_factor,
    }
}

/// Held-out MLM loss and accuracy on the first `rows` packed rows of the held-out split.
pub fn evaluate(model: &TrainModel, run: &RunConfig, index: usize) -> Result<Option<Eval>> {
    let phase = &run.phases[index];
    let dir = phase.data_dir(&run.data);
    if ShardSet::open(dir, Split::Heldout).map(|s| s.num_docs() == 0).unwrap_or(true) {
        return Ok(None);
    }
    let mut src = BatchSource::open(dir, source_config(run, index, phase, Split::Heldout))?;
    let (mut loss, mut correct, mut predicted) = (0f64, 0usize, 0usize);
    for _ in 0..run.train.eval_rows {
        let Some(step) = src.next_step(1) else { break };
        for b in &step.batches {
            if b.labels.iter().all(|&l| l == -100) {
                continue;
            }
            let out = model.mlm_loss(b, None)?;
            loss += out.loss.to_scalar::<f32>()? as f64 * out.num_predicted as f64;
            correct += out.correct;
            predicted += out.num_predicted;
        }
    }
    Ok((predicted > 0).then(|| Eval {
        loss: loss / predicted as f64,
        accuracy: correct as f64 / predicted as f64,
        predicted,
    }))
}

/// Refuses a resumed run whose `[model]` now says something else than the checkpoint (named by
/// field), and says what a changed phase list does to a resumed run.
fn check_resume(run: &RunConfig, saved: &RunConfig, state: &checkpoint::TrainerState, model: &Config) -> Result<()> {
    if run.model.config.is_some() || run.model.config_file.is_some() {
        let new = model_config(run)?;
        let fields = [
            ("hidden_size", new.hidden_size, model.hidden_size),
            ("num_hidden_layers", new.num_hidden_layers, model.num_hidden_layers),
            ("num_attention_heads", new.num_attention_heads, model.num_attention_heads),
            ("intermediate_size", new.intermediate_size, model.intermediate_size),
            ("vocab_size", new.vocab_size, model.vocab_size),
            ("max_position_embeddings", new.max_position_embeddings, model.max_position_embeddings),
        ];
        for (field, new, old) in fields {
            if new != old {
                bail!("[model] {field} is {new}, but the checkpoint's model has {old}; a resumed run keeps its model");
            }
        }
    }
    let done = state.phase.min(saved.phases.len());
    for (i, (a, b)) in saved.phases.iter().zip(&run.phases).enumerate().take(done) {
        if a.name != b.name || a.tokens != b.tokens {
            eprintln!(
                "warning: phase {} is now {:?} ({} tokens) but the checkpoint finished {:?} ({} tokens) there; \
                 finished phases are not run again",
                i + 1,
                b.name,
                b.tokens,
                a.name,
                a.tokens
            );
        }
    }
    if let Some(p) = run.phases.get(state.phase) {
        if p.tokens <= state.phase_tokens {
            eprintln!(
                "warning: phase {} ({}) has {} tokens, but {} were already trained in it: it ends at once",
                state.phase + 1,
                p.name,
                p.tokens,
                state.phase_tokens
            );
        }
    }
    Ok(())
}

/// Runs (or resumes) a training run to the end of its last phase or `max_steps`.
pub fn train(mut run: RunConfig, opts: &TrainOptions) -> Result<TrainSummary> {
    run.validate()?;
    let resume_dir = opts.resume.as_deref().map(checkpoint::resolve_resume).transpose()?;
    if let Some(dir) = &resume_dir {
        // The run lives where its checkpoint is: a copied run resumes into the copy.
        run.out_dir = dir.parent().and_then(Path::parent).context("checkpoint outside a run directory")?.into();
    }
    let ckpt_root = run.out_dir.join("checkpoints");
    if resume_dir.is_none() && ckpt_root.exists() {
        if !opts.overwrite {
            bail!(
                "{} already holds a run (checkpoints/); continue it with --resume {}, or start afresh with --overwrite",
                run.out_dir.display(),
                run.out_dir.display()
            );
        }
        std::fs::remove_dir_all(&ckpt_root).with_context(|| format!("cannot remove {}", ckpt_root.display()))?;
    }
    std::fs::create_dir_all(&run.out_dir).with_context(|| format!("cannot create {}", run.out_dir.display()))?;
    checkpoint::remove_leftovers(&ckpt_root)?;
    let manifest = Manifest::load(&run.data.dir)?;
    if let Some(tok) = &run.data.tokenizer {
        let sha = crate::data::prepare::sha256_file(tok)?;
        if sha != manifest.tokenizer.sha256 {
            bail!(
                "{} is not the tokenizer the shards in {} were made with (SHA-256 differs)",
                tok.display(),
                run.data.dir.display()
            );
        }
    }
    // Model, optimizer and loop state: fresh, or from the checkpoint.
    let (mut model, mut opt, mut state, mut last_ckpt) = match resume_dir {
        Some(dir) => {
            let (state, saved) = checkpoint::load_state(&dir)?;
            let model = TrainModel::load(&dir)?.with_kernels(run.model.kernels);
            check_resume(&run, &saved, &state, model.config())?;
            let mut opt = AdamW::new(run.optimizer, &model);
            opt.load(&dir.join("optimizer.safetensors"))?;
            eprintln!("resuming from {} (step {}, {} tokens)", dir.display(), state.step, state.tokens);
            (model, opt, state, Some(dir))
        }
        None => {
            let model = initial_model(&run, Some(&manifest))?;
            let opt = AdamW::new(run.optimizer, &model);
            let state = TrainerState {
                step: 0,
                tokens: 0,
                phase: 0,
                phase_tokens: 0,
                data: serde_json::Value::Null,
                seed: run.seed,
                elapsed_secs: 0.0,
            };
            (model, opt, state, None)
        }
    };
    if (model.config().vocab_size as u32) < manifest.tokenizer.vocab_size {
        bail!(
            "the model's vocabulary ({}) is smaller than the tokenizer's ({})",
            model.config().vocab_size,
            manifest.tokenizer.vocab_size
        );
    }
    let mut metrics =
        checkpoint::MetricsLog::open(&run.out_dir.join("metrics.jsonl"), opts.resume.as_ref().map(|_| state.step))?;
    let max_steps = opts.max_steps.or(run.train.max_steps);
    let total_tokens = run.total_tokens();
    let progress = opts.progress.unwrap_or(run.train.progress);
    let bar = ProgressBar::with_draw_target(
        Some(total_tokens),
        if progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent}% ETA {eta} | {msg}")
            .expect("valid template"),
    );
    bar.set_position(state.tokens);
    let print_lines = progress && bar.is_hidden();
    let timing = step_timing();

    let mut dump = match &opts.dump_batches {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let mut source: Option<BatchSource> = None;
    let mut eval_start = None;
    let mut last_eval = None;
    let mut last_loss = f64::NAN;
    let (mut run_tokens, mut run_secs, mut run_capacity) = (0u64, 0f64, 0u64);
    let mut smoothed_tps = 0f64;
    loop {
        // Phase bookkeeping.
        while state.phase < run.phases.len() && state.phase_tokens >= run.phases[state.phase].tokens {
            state.phase += 1;
            state.phase_tokens = 0;
            state.data = serde_json::Value::Null;
            source = None;
        }
        let done = state.phase >= run.phases.len() || max_steps.is_some_and(|m| state.step >= m);
        let index = state.phase.min(run.phases.len() - 1);
        let phase = run.phases[index].clone();
        model.set_rope_theta(phase.rope_theta_global, phase.rope_theta_local);
        if phase.max_seq_len > model.config().max_position_embeddings {
            bail!("phase {}: max_seq_len {} exceeds max_position_embeddings", phase.name, phase.max_seq_len);
        }
        if eval_start.is_none() && opts.resume.is_none() && state.step == 0 {
            eval_start = evaluate(&model, &run, index)?;
            if let Some(e) = eval_start {
                metrics.log(json!({"type": "eval", "step": 0, "tokens": 0, "phase": index, "loss": e.loss, "accuracy": e.accuracy, "predicted": e.predicted}))?;
                bar.println(format!("step 0: held-out loss {:.4}, accuracy {:.4}", e.loss, e.accuracy));
            }
        }
        if done {
            break;
        }
        if source.is_none() {
            let mut src =
                BatchSource::open(phase.data_dir(&run.data), source_config(&run, index, &phase, Split::Train))?;
            if !state.data.is_null() {
                src.restore(&state.data)?;
            }
            bar.println(format!(
                "phase {} ({}): {} tokens, max_seq_len {}, RoPE θ {}/{}, lr {:.2e}",
                index + 1,
                phase.name,
                phase.tokens,
                phase.max_seq_len,
                phase.rope_theta_global,
                phase.rope_theta_local,
                phase.lr.lr
            ));
            source = Some(src);
        }
        let src = source.as_mut().expect("source opened");

        // One optimizer step.
        let t0 = Instant::now();
        let rows =
            phase.batch_warmup.map_or(phase.rows_per_step, |w| w.rows_at(state.phase_tokens, phase.rows_per_step));
        let step_data = src.next_step(rows).context("the training data ran out")?;
        if let Some(w) = dump.as_mut() {
            writeln!(w, "{}", json!({"step": state.step + 1, "tokens": step_data.tokens, "rows": step_data.batches}))?;
        }
        let lr = phase.lr.lr_at(state.phase_tokens, phase.tokens);
        let total_pred: usize = step_data.batches.iter().map(|b| b.labels.iter().filter(|&&l| l != -100).count()).sum();
        let mut grads = crate::grads::Gradients::new();
        let (mut loss, mut correct) = (0f64, 0usize);
        let t_data = t0.elapsed().as_secs_f64();
        let (mut t_fwd, mut t_bwd) = (0f64, 0f64);
        for (k, b) in step_data.batches.iter().enumerate() {
            let n = b.labels.iter().filter(|&&l| l != -100).count();
            if n == 0 {
                continue;
            }
            let key = DropoutKey { seed: run.seed, step: state.step, micro: k as u64 };
            let tf = Instant::now();
            let out = model.mlm_loss(b, Some((run.dropout, key)))?;
            t_fwd += tf.elapsed().as_secs_f64();
            let tb = Instant::now();
            let w = n as f64 / total_pred as f64;
            loss += out.loss.to_scalar::<f32>()? as f64 * w;
            correct += out.correct;
            let g = (out.loss * w)?.backward()?;
            crate::grads::accumulate(&mut grads, &model, &g)?;
            t_bwd += tb.elapsed().as_secs_f64();
        }
        let grad_norm = crate::grads::grad_norm(&grads)?;
        if !loss.is_finite() || !grad_norm.is_finite() {
            let what = if loss.is_finite() {
                format!("the gradient norm is {grad_norm}")
            } else {
                format!("the loss is {loss}")
            };
            let keep = match checkpoint::newest_loadable(&ckpt_root)? {
                Some(d) => format!(
                    "the newest checkpoint with finite weights is {} (resume with `modernbert train --resume {}`)",
                    d.display(),
                    d.display()
                ),
                None => "no checkpoint with finite weights was written yet".to_string(),
            };
            bar.abandon();
            bail!(
                "{what} at step {} (phase {}, {} tokens); stopping without updating the weights; {keep}",
                state.step + 1,
                phase.name,
                state.tokens
            );
        }
        let to = Instant::now();
        let stats = opt.step(&model, &grads, lr, phase.lr.lr, phase.weight_decay)?;
        if timing {
            eprintln!(
                "step {}: data {:.0} ms, forward {:.0} ms, backward {:.0} ms, optimizer {:.0} ms",
                state.step + 1,
                t_data * 1e3,
                t_fwd * 1e3,
                t_bwd * 1e3,
                to.elapsed().as_secs_f64() * 1e3
            );
        }
        drop(grads);
        let secs = t0.elapsed().as_secs_f64();
        state.step += 1;
        state.tokens += step_data.tokens as u64;
        state.phase_tokens += step_data.tokens as u64;
        state.elapsed_secs += secs;
        state.data = src.state();
        run_tokens += step_data.tokens as u64;
        run_capacity += step_data.capacity as u64;
        run_secs += secs;
        last_loss = loss;
        let tps = step_data.tokens as f64 / secs;
        smoothed_tps = if smoothed_tps == 0.0 { tps } else { 0.9 * smoothed_tps + 0.1 * tps };
        let accuracy = correct as f64 / total_pred.max(1) as f64;
        metrics.log(json!({
            "type": "train", "step": state.step, "tokens": state.tokens, "phase": index, "loss": loss,
            "accuracy": accuracy, "lr": lr, "rows": step_data.batches.len(), "predicted": total_pred,
            "grad_norm": grad_norm, "clipped": stats.clipped, "tokens_per_sec": tps, "elapsed": state.elapsed_secs,
        }))?;
        bar.set_position(state.tokens);
        bar.set_message(format!(
            "step {} loss {loss:.4} acc {accuracy:.3} lr {lr:.2e} {:.0} tok/s",
            state.step, smoothed_tps
        ));
        if print_lines && (state.step % 10 == 0 || state.step == 1) {
            eprintln!(
                "step {} tokens {} loss {loss:.4} acc {accuracy:.3} lr {lr:.2e} {:.0} tok/s",
                state.step, state.tokens, smoothed_tps
            );
        }
        let phase_over = state.phase_tokens >= phase.tokens;
        if run.train.eval_every > 0 && state.step % run.train.eval_every == 0 && !phase_over {
            if let Some(e) = evaluate(&model, &run, index)? {
                metrics.log(json!({"type": "eval", "step": state.step, "tokens": state.tokens, "phase": index, "loss": e.loss, "accuracy": e.accuracy, "predicted": e.predicted}))?;
                bar.println(format!("step {}: held-out loss {:.4}, accuracy {:.4}", state.step, e.loss, e.accuracy));
                last_eval = Some(e);
            }
        }
        let at_end = max_steps.is_some_and(|m| state.step >= m) || (phase_over && index + 1 == run.phases.len());
        if (run.train.checkpoint_every > 0 && state.step % run.train.checkpoint_every == 0) || at_end {
            let name = checkpoint::step_name(state.step);
            let dir = checkpoint::save_checkpoint(
                &ckpt_root,
                &name,
                &CheckpointParts { model: &model, optimizer: &opt, state: &state, run: &run },
            )?;
            checkpoint::prune(&ckpt_root, run.train.keep_checkpoints, &name)?;
            last_ckpt = Some(dir);
        }
    }
    bar.finish_and_clear();
    let final_phase = state.phase.min(run.phases.len() - 1);
    let eval_end = match evaluate(&model, &run, final_phase)? {
        Some(e) => {
            if last_eval.is_none_or(|l: Eval| l != e) {
                metrics.log(json!({"type": "eval", "step": state.step, "tokens": state.tokens, "phase": final_phase, "loss": e.loss, "accuracy": e.accuracy, "predicted": e.predicted}))?;
            }
            Some(e)
        }
        None => None,
    };
    if run.train.plot {
        let png = run.out_dir.join("loss.png");
        if let Err(e) = crate::plot::plot_metrics(&run.out_dir.join("metrics.jsonl"), &png) {
            eprintln!("warning: could not plot {}: {e:#}", png.display());
        }
    }
    Ok(TrainSummary {
        steps: state.step,
        tokens: state.tokens,
        last_loss,
        eval_start,
        eval_end,
        tokens_per_sec: if run_secs > 0.0 { run_tokens as f64 / run_secs } else { 0.0 },
        packing_efficiency: if run_capacity > 0 { run_tokens as f64 / run_capacity as f64 } else { 0.0 },
        checkpoint: last_ckpt,
    })
}

/// Whether `MODERNBERT_TRAIN_TIMING` (set, not `0`) asks for where each step's time goes.
pub(crate) fn step_timing() -> bool {
    std::env::var_os("MODERNBERT_TRAIN_TIMING").is_some_and(|v| v != "0")
}
