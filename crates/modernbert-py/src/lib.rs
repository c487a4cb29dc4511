//! Python bindings of the `modernbert` library: the module `modernbert._modernbert`, re-exported
//! by the pure-Python package `modernbert` (python/modernbert/__init__.py). Names follow
//! sentence-transformers (`encode`, `prompt_name`, `normalize_embeddings`, `truncate_dim`,
//! `batch_size`, `max_seq_length`); docs/python.md is the user guide.
//!
//! Every call that runs the model releases the GIL (`Python::detach`), so Python threads that
//! share one [`PyModel`] run in parallel; a model loaded with `threads=k` runs its inference in
//! its own rayon pool of `k` threads (`ThreadPool::install`), else in rayon's global pool.

mod convert;

use convert::{json_to_py, py_err, py_err_at, texts, to_py, Texts};
use modernbert::formats::{colbert::maxsim, Format};
use modernbert::pipelines::{EmbedOptions, Output, Prepared, Want};
use modernbert::tasks::{group_entities, ClassifyOutput, Embedding};
use modernbert::{Error, Model, Precision, Truncation};
use numpy::ndarray::{Array1, Array2};
use numpy::IntoPyArray;
use pyo3::exceptions::{PyFileNotFoundError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// Same allocator as the CLI: mimalloc keeps freed activation buffers for reuse (glibc returns large
// blocks to the OS after every op). It serves the Rust side only; numpy arrays made from Rust
// vectors are freed by Rust.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A loaded ModernBERT model (any format the library reads: sentence-transformers bi-encoder,
/// cross-encoder, PyLate ColBERT, plain transformers checkpoint).
#[pyclass(name = "Model", module = "modernbert", frozen)]
struct PyModel {
    model: Arc<Model>,
    /// The model's own rayon pool (`threads=k`), or `None` for rayon's global pool.
    pool: Option<rayon::ThreadPool>,
    threads: Option<usize>,
    precision: Precision,
    /// What the caller passed (a directory or a Hub id), for pickling.
    spec: String,
    /// `max_seq_length` set by the caller; 0 = the model's own limit.
    max_len: AtomicUsize,
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::F32 => "f32",
        Precision::Bf16 => "bf16",
        Precision::Int8 => "int8",
    }
}

/// The model used when none is named: the library's rule ($MODERNBERT_MODEL, else
/// `models/modernbert-mini` next to the executable or above the current directory), then the
/// clone this package was built from (a `pip install crates/modernbert-py` from a checkout).
fn default_model() -> Option<String> {
    modernbert::hub::default_model().or_else(|| {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/modernbert-mini");
        let shipped = std::fs::canonicalize(shipped).ok()?;
        shipped.join("config.json").is_file().then(|| shipped.display().to_string())
    })
}

fn load(spec: &str, precision: Precision) -> Result<Model, PyErr> {
    let dir: PathBuf = match modernbert::hub::resolve(spec) {
        Ok(dir) => dir,
        // Not a directory and not shaped like a Hub id.
        Err(Error::Input(m)) if !Path::new(spec).exists() => return Err(PyFileNotFoundError::new_err(m)),
        Err(e) => return Err(py_err(e)),
    };
    if !dir.is_dir() {
        return Err(PyFileNotFoundError::new_err(format!("model directory {} does not exist", dir.display())));
    }
    Model::load_with(&dir, precision).map_err(py_err)
}

impl PyModel {
    /// Runs `f` in the model's thread pool (or rayon's global one).
    fn install<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// The length limit of `encode`/`rerank`/`predict` inputs, specials included: the one set on
    /// the object, else the format's (`max_seq_length` of a sentence-transformers model,
    /// `max_length` of a cross-encoder, `document_length` of a ColBERT model), else
    /// `max_position_embeddings`, as sentence-transformers caps it.
    fn max_seq_length_value(&self) -> usize {
        let own = match &self.model.format {
            Format::SentenceTransformer(st) => st.max_seq_length,
            Format::CrossEncoder(ce) => ce.max_length,
            Format::Colbert(c) => Some(c.document_length),
            Format::Transformers => None,
        }
        .unwrap_or(self.model.config.max_position_embeddings);
        match self.max_len.load(Ordering::Relaxed) {
            0 => own,
            set => set.min(own),
        }
    }

    /// Inputs longer than `max_seq_length` are cut, as sentence-transformers does.
    fn truncation(&self) -> Option<Truncation> {
        Some(Truncation::right(self.max_seq_length_value()))
    }

    /// The width `encode` returns without `truncate_dim`: the model's dimension, cut to its saved
    /// `truncate_dim` (sentence-transformers' `get_sentence_embedding_dimension`).
    fn output_dimension(&self) -> usize {
        let d = self.model.dimension();
        match &self.model.format {
            Format::SentenceTransformer(st) => st.truncate_dim.map_or(d, |t| t.min(d)),
            _ => d,
        }
    }

    /// Tokenises `texts` as the model's format says, then runs them in chunks of `batch_size`
    /// inputs of similar length (longest first, as sentence-transformers batches), releasing the
    /// GIL during the work and checking for Ctrl-C between chunks. Embeddings in input order.
    fn embed(
        &self,
        py: Python<'_>,
        texts: &[String],
        opts: &EmbedOptions,
        batch_size: usize,
    ) -> PyResult<Vec<Embedding>> {
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let model = &*self.model;
        let prepared: Vec<Prepared> = py
            .detach(|| {
                self.install(|| {
                    texts
                        .iter()
                        .enumerate()
                        .map(|(i, t)| model.prepare(t, opts).map_err(|e| (i, e)))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .map_err(|(i, e)| py_err_at(i, e))?;
        let mut order: Vec<usize> = (0..prepared.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(prepared[i].ids.len()));
        let mut out: Vec<Option<Embedding>> = (0..prepared.len()).map(|_| None).collect();
        for chunk in order.chunks(batch_size) {
            let inputs: Vec<(&Prepared, Want)> = chunk.iter().map(|&i| (&prepared[i], Want::Embedding)).collect();
            let outputs = py.detach(|| self.install(|| model.run(&inputs, opts.pooling))).map_err(py_err)?;
            for (&i, o) in chunk.iter().zip(outputs) {
                out[i] = Some(match o {
                    Output::Vector(v) => Embedding::Pooled(model.finish(v, opts)),
                    Output::Vectors(v) => Embedding::Tokens(v),
                    Output::Logits(l) => Embedding::Pooled(l),
                });
            }
            py.check_signals()?;
        }
        Ok(out.into_iter().map(|e| e.expect("every input is in one chunk")).collect())
    }

    /// `encode` with the prompt/query choice already made.
    #[allow(clippy::too_many_arguments)]
    fn encode_impl<'py>(
        &self,
        py: Python<'py>,
        texts_obj: &Bound<'py, PyAny>,
        prompt_name: Option<String>,
        prompt: Option<String>,
        normalize_embeddings: Option<bool>,
        truncate_dim: Option<usize>,
        batch_size: usize,
        is_query: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Texts { texts, single } = texts(texts_obj, "texts")?;
        if truncate_dim == Some(0) {
            return Err(PyValueError::new_err("truncate_dim must be at least 1"));
        }
        let opts = EmbedOptions {
            prompt_name,
            prompt,
            truncate_dim,
            normalize: normalize_embeddings.unwrap_or(false),
            truncation: self.truncation(),
            is_query,
            pooling: None,
        };
        let embeddings = self.embed(py, &texts, &opts, batch_size)?;
        let colbert = matches!(self.model.format, Format::Colbert(_));
        if colbert {
            // One 2-D array (tokens × dimension) per text.
            let arrays = embeddings
                .into_iter()
                .map(|e| {
                    let rows = match e {
                        Embedding::Tokens(rows) => rows,
                        Embedding::Pooled(v) => vec![v],
                    };
                    let d = rows.first().map_or(self.model.dimension(), Vec::len);
                    let flat: Vec<f32> = rows.concat();
                    Array2::from_shape_vec((flat.len() / d.max(1), d), flat)
                        .map(|a| a.into_pyarray(py).into_any())
                        .map_err(|e| PyValueError::new_err(e.to_string()))
                })
                .collect::<PyResult<Vec<_>>>()?;
            return if single {
                Ok(arrays.into_iter().next().expect("one text"))
            } else {
                Ok(PyList::new(py, arrays)?.into_any())
            };
        }
        let vectors: Vec<Vec<f32>> = embeddings
            .into_iter()
            .map(|e| match e {
                Embedding::Pooled(v) => v,
                Embedding::Tokens(mut rows) => rows.pop().unwrap_or_default(),
            })
            .collect();
        if single {
            let v = vectors.into_iter().next().expect("one text");
            return Ok(Array1::from_vec(v).into_pyarray(py).into_any());
        }
        let d = vectors
            .first()
            .map_or_else(|| truncate_dim.map_or(self.output_dimension(), |t| t.min(self.model.dimension())), Vec::len);
        let flat: Vec<f32> = vectors.concat();
        let array = Array2::from_shape_vec((texts.len(), d), flat).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(array.into_pyarray(py).into_any())
    }

    /// The name of the model's first prompt among `names`, if it has one.
    fn prompt_named(&self, names: &[&str]) -> Option<String> {
        let prompts = match &self.model.format {
            Format::SentenceTransformer(st) => &st.prompts,
            Format::Colbert(c) => &c.prompts,
            _ => return None,
        };
        names.iter().find(|n| prompts.prompts.contains_key(**n)).map(|n| n.to_string())
    }

    fn prompt_table(&self) -> Option<&modernbert::formats::sentence_transformers::Prompts> {
        match &self.model.format {
            Format::SentenceTransformer(st) => Some(&st.prompts),
            Format::Colbert(c) => Some(&c.prompts),
            _ => None,
        }
    }
}

#[pymethods]
impl PyModel {
    /// Same as :meth:`Model.load` (``Model("dir")`` reads like ``SentenceTransformer("dir")``).
    #[new]
    #[pyo3(signature = (path_or_hub_id=None, precision="f32", threads=None))]
    fn new(py: Python<'_>, path_or_hub_id: Option<PathBuf>, precision: &str, threads: Option<usize>) -> PyResult<Self> {
        let precision: Precision = precision.parse().map_err(py_err)?;
        if threads == Some(0) {
            return Err(PyValueError::new_err("threads must be at least 1 (or None for all cores)"));
        }
        let spec = match path_or_hub_id {
            // A local path is kept absolute (for pickling), a Hub id as it is.
            Some(p) => std::fs::canonicalize(&p).unwrap_or(p).to_string_lossy().into_owned(),
            None => default_model().ok_or_else(|| {
                PyValueError::new_err(
                    "no model given: pass a model directory or a Hugging Face Hub id (or set $MODERNBERT_MODEL)",
                )
            })?,
        };
        let pool = match threads {
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(|i| format!("modernbert-{i}"))
                    .build()
                    .map_err(|e| PyValueError::new_err(format!("cannot start {n} threads: {e}")))?,
            ),
            None => None,
        };
        let model = py.detach(|| match &pool {
            Some(p) => p.install(|| load(&spec, precision)),
            None => load(&spec, precision),
        })?;
        Ok(Self { model: Arc::new(model), pool, threads, precision, spec, max_len: AtomicUsize::new(0) })
    }

    /// Loads a model directory (``str`` or ``os.PathLike``) or Hugging Face Hub id (default: the
    /// model this repository ships).
    ///
    /// ``precision``: ``"f32"`` (exact), ``"bf16"`` or ``"int8"`` (faster, approximate).
    /// ``threads``: inference threads of this model (its own pool); ``None`` = all cores
    /// (rayon's global pool, sized by ``RAYON_NUM_THREADS`` when set).
    #[staticmethod]
    #[pyo3(signature = (path_or_hub_id=None, precision="f32", threads=None))]
    fn load(
        py: Python<'_>,
        path_or_hub_id: Option<PathBuf>,
        precision: &str,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        Self::new(py, path_or_hub_id, precision, threads)
    }

    /// Sentence embeddings as the model's format computes them (pooling, Dense, Normalize,
    /// prompts, saved ``truncate_dim``): a float32 array ``(len(texts), dimension)``, or 1-D for
    /// one string. A ColBERT model gives one ``(tokens, dimension)`` array per text.
    #[pyo3(signature = (texts, prompt_name=None, prompt=None, normalize_embeddings=None, truncate_dim=None, batch_size=32, is_query=false))]
    #[allow(clippy::too_many_arguments)]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        prompt_name: Option<String>,
        prompt: Option<String>,
        normalize_embeddings: Option<bool>,
        truncate_dim: Option<usize>,
        batch_size: usize,
        is_query: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.encode_impl(py, texts, prompt_name, prompt, normalize_embeddings, truncate_dim, batch_size, is_query)
    }

    /// ``encode`` for queries: the model's ``"query"`` prompt when it has one (and no prompt is
    /// given); ColBERT models encode as queries.
    #[pyo3(signature = (texts, prompt_name=None, prompt=None, normalize_embeddings=None, truncate_dim=None, batch_size=32))]
    #[allow(clippy::too_many_arguments)]
    fn encode_query<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        prompt_name: Option<String>,
        prompt: Option<String>,
        normalize_embeddings: Option<bool>,
        truncate_dim: Option<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = match (&prompt_name, &prompt) {
            (None, None) => self.prompt_named(&["query"]),
            _ => prompt_name,
        };
        self.encode_impl(py, texts, name, prompt, normalize_embeddings, truncate_dim, batch_size, true)
    }

    /// ``encode`` for documents: the first of the model's ``"document"``, ``"passage"``,
    /// ``"corpus"`` prompts (and no prompt is given); ColBERT models encode as documents.
    #[pyo3(signature = (texts, prompt_name=None, prompt=None, normalize_embeddings=None, truncate_dim=None, batch_size=32))]
    #[allow(clippy::too_many_arguments)]
    fn encode_document<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        prompt_name: Option<String>,
        prompt: Option<String>,
        normalize_embeddings: Option<bool>,
        truncate_dim: Option<usize>,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = match (&prompt_name, &prompt) {
            (None, None) => self.prompt_named(&["document", "passage", "corpus"]),
            _ => prompt_name,
        };
        self.encode_impl(py, texts, name, prompt, normalize_embeddings, truncate_dim, batch_size, false)
    }

    /// Top-``top_k`` predictions for every ``[MASK]``: per text ``{"text", "masks": [{"position",
    /// "predictions": [{"token_id", "token", "score", "logit"}]}]}`` (the CLI's JSON); one dict
    /// for one string. ``max_length`` truncates (else a too-long input is an error).
    #[pyo3(signature = (texts, top_k=5, max_length=None))]
    fn fill_mask<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        top_k: usize,
        max_length: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Texts { texts, single } = self::texts(texts, "texts")?;
        if top_k == 0 {
            return Err(PyValueError::new_err("top_k must be at least 1"));
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let model = &*self.model;
        let results = py.detach(|| self.install(|| model.fill_mask(&refs, top_k, max_length))).map_err(py_err)?;
        let items = texts
            .iter()
            .zip(results)
            .map(|(text, masks)| to_py(py, &serde_json::json!({ "text": text, "masks": masks })))
            .collect::<PyResult<Vec<_>>>()?;
        one_or_list(py, items, single)
    }

    /// Sequence classification (``{"logits", "label", "score"}`` and ``"labels"`` for multi-label
    /// models) or token classification (a list of ``{"token", "start", "end", "label", "score",
    /// "logits"}``; with ``aggregate=True`` ``{"entities": [...]}``), like the CLI's JSON.
    /// ``pairs``: second texts (one per text) for pair classification.
    #[pyo3(signature = (texts, pairs=None, aggregate=false, max_length=None))]
    fn classify<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        pairs: Option<&Bound<'py, PyAny>>,
        aggregate: bool,
        max_length: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Texts { texts, single } = self::texts(texts, "texts")?;
        let pairs = match pairs {
            Some(p) => {
                let p = self::texts(p, "pairs")?;
                if p.texts.len() != texts.len() || p.single != single {
                    return Err(PyValueError::new_err(format!(
                        "pairs must match texts: {} texts, {} pairs",
                        texts.len(),
                        p.texts.len()
                    )));
                }
                Some(p.texts)
            }
            None => None,
        };
        let inputs: Vec<(&str, Option<&str>)> =
            texts.iter().enumerate().map(|(i, t)| (t.as_str(), pairs.as_ref().map(|p| p[i].as_str()))).collect();
        let model = &*self.model;
        let results = py.detach(|| self.install(|| model.classify(&inputs, max_length))).map_err(py_err)?;
        let items = results
            .into_iter()
            .zip(&texts)
            .map(|(r, text)| match (aggregate, r) {
                (true, ClassifyOutput::Tokens(tokens)) => {
                    to_py(py, &serde_json::json!({ "entities": group_entities(text, &tokens) }))
                }
                (true, _) => Err(PyValueError::new_err("aggregate groups the tokens of a token-classification model")),
                (false, r) => to_py(py, &r),
            })
            .collect::<PyResult<Vec<_>>>()?;
        one_or_list(py, items, single)
    }

    /// Ranks ``documents`` by relevance to ``query`` (a cross-encoder's score, or a ColBERT
    /// model's MaxSim), best first: ``[{"corpus_id", "index", "score", "text"}]`` (``corpus_id``
    /// as sentence-transformers' ``CrossEncoder.rank``, ``index`` as the CLI and TEI).
    #[pyo3(signature = (query, documents, top_k=None, raw_scores=false, return_documents=true))]
    fn rerank<'py>(
        &self,
        py: Python<'py>,
        query: String,
        documents: &Bound<'py, PyAny>,
        top_k: Option<usize>,
        raw_scores: bool,
        return_documents: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let docs = self::texts(documents, "documents")?.texts;
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let model = &*self.model;
        let truncation = self.truncation();
        let scores =
            py.detach(|| self.install(|| model.score_pairs(&query, &refs, raw_scores, truncation))).map_err(py_err)?;
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        order.truncate(top_k.unwrap_or(order.len()));
        let out = PyList::empty(py);
        for i in order {
            let d = PyDict::new(py);
            d.set_item("corpus_id", i)?;
            d.set_item("index", i)?;
            d.set_item("score", scores[i])?;
            if return_documents {
                d.set_item("text", &docs[i])?;
            }
            out.append(d)?;
        }
        Ok(out)
    }

    /// Scores of (query, document) pairs, like sentence-transformers' ``CrossEncoder.predict``:
    /// a float32 array ``(n,)`` for a one-label cross-encoder, ``(n, num_labels)`` for more (the
    /// model's activation, or raw logits with ``raw_scores``), ColBERT MaxSim for a ColBERT
    /// model; one pair ``(query, document)`` gives one score.
    #[pyo3(signature = (pairs, raw_scores=false, batch_size=32))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        pairs: &Bound<'py, PyAny>,
        raw_scores: bool,
        batch_size: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let (pairs, single) = text_pairs(pairs)?;
        let model = &*self.model;
        let truncation = self.truncation();
        let rows: Vec<Vec<f32>> = match &model.format {
            Format::CrossEncoder(ce) => {
                let prepared: Vec<Prepared> = py
                    .detach(|| {
                        self.install(|| {
                            pairs
                                .iter()
                                .enumerate()
                                .map(|(i, (q, d))| model.prepare_pair(q, d, truncation).map_err(|e| (i, e)))
                                .collect::<Result<Vec<_>, _>>()
                        })
                    })
                    .map_err(|(i, e)| py_err_at(i, e))?;
                let mut rows = Vec::with_capacity(prepared.len());
                for chunk in prepared.chunks(batch_size) {
                    let inputs: Vec<(&Prepared, Want)> = chunk.iter().map(|p| (p, Want::Logits)).collect();
                    let outputs = py.detach(|| self.install(|| model.run(&inputs, None))).map_err(py_err)?;
                    for o in outputs {
                        match o {
                            Output::Logits(l) if raw_scores => rows.push(l),
                            Output::Logits(l) => rows.push(ce.scores(&l)),
                            _ => return Err(PyValueError::new_err("expected logits")),
                        }
                    }
                    py.check_signals()?;
                }
                rows
            }
            Format::Colbert(_) => {
                let queries: Vec<String> = pairs.iter().map(|(q, _)| q.clone()).collect();
                let docs: Vec<String> = pairs.iter().map(|(_, d)| d.clone()).collect();
                let q = EmbedOptions { is_query: true, ..Default::default() };
                let d = EmbedOptions { is_query: false, ..Default::default() };
                let qv = self.embed(py, &queries, &q, batch_size)?;
                let dv = self.embed(py, &docs, &d, batch_size)?;
                qv.iter()
                    .zip(&dv)
                    .map(|(a, b)| match (a, b) {
                        (Embedding::Tokens(a), Embedding::Tokens(b)) => vec![maxsim(a, b)],
                        _ => vec![f32::NAN],
                    })
                    .collect()
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "predict needs a cross-encoder or a ColBERT model; this is a {} model ({})",
                    other.name(),
                    model.head.name()
                )))
            }
        };
        let width = rows.first().map_or(1, Vec::len);
        if single {
            let row = rows.into_iter().next().expect("one pair");
            return if width == 1 {
                Ok(row[0].into_pyobject(py)?.into_any())
            } else {
                Ok(Array1::from_vec(row).into_pyarray(py).into_any())
            };
        }
        if width == 1 {
            let flat: Vec<f32> = rows.into_iter().map(|r| r[0]).collect();
            return Ok(Array1::from_vec(flat).into_pyarray(py).into_any());
        }
        let n = rows.len();
        let array =
            Array2::from_shape_vec((n, width), rows.concat()).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(array.into_pyarray(py).into_any())
    }

    /// The tokens the model sees, special tokens included: per text ``{"ids", "tokens",
    /// "offsets"}`` (character offsets, as the CLI prints); one dict for one string.
    #[pyo3(signature = (texts, pairs=None, max_length=None))]
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        pairs: Option<&Bound<'py, PyAny>>,
        max_length: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let Texts { texts, single } = self::texts(texts, "texts")?;
        let pairs = match pairs {
            Some(p) => {
                let p = self::texts(p, "pairs")?.texts;
                if p.len() != texts.len() {
                    return Err(PyValueError::new_err(format!(
                        "pairs must match texts: {} texts, {} pairs",
                        texts.len(),
                        p.len()
                    )));
                }
                Some(p)
            }
            None => None,
        };
        let inputs: Vec<(&str, Option<&str>)> =
            texts.iter().enumerate().map(|(i, t)| (t.as_str(), pairs.as_ref().map(|p| p[i].as_str()))).collect();
        let model = &*self.model;
        let encodings = py
            .detach(|| model.tokenizer().and_then(|t| t.encode_batch(&inputs, max_length.map(Truncation::right))))
            .map_err(py_err)?;
        let items = encodings
            .into_iter()
            .map(|e| {
                let d = PyDict::new(py);
                d.set_item("ids", e.ids)?;
                d.set_item("tokens", e.tokens)?;
                d.set_item("offsets", e.offsets)?;
                Ok(d.into_any())
            })
            .collect::<PyResult<Vec<_>>>()?;
        one_or_list(py, items, single)
    }

    /// Width of ``encode``'s vectors (after the model's saved ``truncate_dim``); a ColBERT
    /// model's token-vector width.
    #[getter]
    fn dimension(&self) -> usize {
        self.output_dimension()
    }

    /// ``config.json`` as the library read it (the original ModernBERT key form).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.model.config.to_hf_json())
    }

    /// ``"sentence-transformers"``, ``"cross-encoder"``, ``"colbert"`` or ``"transformers"``.
    #[getter]
    fn format(&self) -> &'static str {
        self.model.format.name()
    }

    /// Inputs of ``encode``, ``rerank`` and ``predict`` are cut to this many tokens (specials
    /// included). Setting it can only lower the model's own limit; ``None`` restores it.
    #[getter]
    fn get_max_seq_length(&self) -> usize {
        self.max_seq_length_value()
    }

    #[setter]
    fn set_max_seq_length(&self, value: Option<usize>) -> PyResult<()> {
        match value {
            Some(n) if n < 3 => Err(PyValueError::new_err("max_seq_length must be at least 3 ([CLS], a token, [SEP])")),
            Some(n) => {
                self.max_len.store(n, Ordering::Relaxed);
                Ok(())
            }
            None => {
                self.max_len.store(0, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// The model's prompts (``config_sentence_transformers.json``), name → prefix.
    #[getter]
    fn prompts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        if let Some(p) = self.prompt_table() {
            for (k, v) in &p.prompts {
                d.set_item(k, v)?;
            }
        }
        Ok(d)
    }

    /// The prompt used when ``encode`` gets none.
    #[getter]
    fn default_prompt_name(&self) -> Option<String> {
        self.prompt_table().and_then(|p| p.default_prompt_name.clone())
    }

    /// ``cosine``, ``dot``, ... as the model was saved (``None`` when it does not say).
    #[getter]
    fn similarity_fn_name(&self) -> Option<String> {
        match &self.model.format {
            Format::SentenceTransformer(st) => st.similarity_fn_name.clone(),
            _ => None,
        }
    }

    /// The directory the model was loaded from.
    #[getter]
    fn path(&self) -> String {
        self.model.dir().display().to_string()
    }

    #[getter]
    fn precision(&self) -> &'static str {
        precision_name(self.precision)
    }

    /// Inference threads of this model, or ``None`` for rayon's global pool.
    #[getter]
    fn threads(&self) -> Option<usize> {
        self.threads
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(path={:?}, format={:?}, dimension={}, max_seq_length={}, precision={:?}, threads={})",
            self.model.dir().display().to_string(),
            self.model.format.name(),
            self.output_dimension(),
            self.max_seq_length_value(),
            precision_name(self.precision),
            self.threads.map_or("None".to_string(), |t| t.to_string()),
        )
    }

    /// Pickling stores how the model was loaded; unpickling loads it again (Ray, Spark,
    /// multiprocessing), so the path must exist where it is unpickled.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let me = slf.get();
        let args = (me.spec.clone(), precision_name(me.precision), me.threads).into_pyobject(py)?;
        PyTuple::new(py, [slf.get_type().into_any(), args.into_any()])
    }
}

/// A list of results, or the only one for a single-string input.
fn one_or_list<'py>(py: Python<'py>, items: Vec<Bound<'py, PyAny>>, single: bool) -> PyResult<Bound<'py, PyAny>> {
    if single {
        return Ok(items.into_iter().next().expect("one input"));
    }
    Ok(PyList::new(py, items)?.into_any())
}

/// `(query, document)` pairs: a sequence of 2-item sequences of str, or one such pair.
fn text_pairs(obj: &Bound<'_, PyAny>) -> PyResult<(Vec<(String, String)>, bool)> {
    let pair = |item: &Bound<'_, PyAny>, i: Option<usize>| -> PyResult<(String, String)> {
        let at = i.map_or(String::new(), |i| format!("[{i}]"));
        let bad = || PyTypeError::new_err(format!("pairs{at} must be a (query, document) pair of str"));
        if item.is_instance_of::<PyString>() {
            return Err(bad());
        }
        let parts: Vec<String> = item
            .try_iter()
            .map_err(|_| bad())?
            .map(|x| x.and_then(|x| x.extract::<String>()))
            .collect::<PyResult<_>>()
            .map_err(|_| bad())?;
        match <[String; 2]>::try_from(parts) {
            Ok([a, b]) => Ok((a, b)),
            Err(_) => Err(bad()),
        }
    };
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("pairs must be a list of (query, document) pairs, not a str"));
    }
    let items: Vec<Bound<'_, PyAny>> = obj
        .try_iter()
        .map_err(|_| PyTypeError::new_err("pairs must be a list of (query, document) pairs"))?
        .collect::<PyResult<_>>()?;
    // One pair, as sentence-transformers accepts: two strings.
    if items.len() == 2 && items.iter().all(|x| x.is_instance_of::<PyString>()) {
        return Ok((vec![pair(obj, None)?], true));
    }
    let pairs = items.iter().enumerate().map(|(i, x)| pair(x, Some(i))).collect::<PyResult<Vec<_>>>()?;
    Ok((pairs, false))
}

/// The extension module; `modernbert/__init__.py` re-exports it.
#[pymodule]
#[pyo3(name = "_modernbert")]
fn modernbert_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    modernbert::threads::keep_candle_on_one_thread();
    m.add_class::<PyModel>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
