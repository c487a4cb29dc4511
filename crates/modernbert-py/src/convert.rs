//! Conversions between Python arguments / results and the library's types, and the mapping of
//! library errors to Python exceptions.

use modernbert::Error;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};
use serde_json::Value;

/// A library error as the Python exception that fits, with the library's one-line message:
/// a missing file `FileNotFoundError`, other I/O and Hub failures `OSError`, a tensor failure
/// `RuntimeError`, everything else (the caller's input, the model's files) `ValueError`.
pub fn py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        Error::Io { .. } | Error::Hub(_) => PyOSError::new_err(msg),
        Error::Tensor(_) => PyRuntimeError::new_err(msg),
        // Input, TooLong, Config, Weights, Tokenizer (and any variant added later).
        _ => PyValueError::new_err(msg),
    }
}

/// [`py_err`] for an error about input `i`: the message names it, as the CLI's does.
pub fn py_err_at(i: usize, e: Error) -> PyErr {
    match e {
        Error::Io { .. } | Error::Hub(_) | Error::Tensor(_) => py_err(e),
        Error::Tokenizer(m) => PyValueError::new_err(format!("tokenizer: input {i}: {m}")),
        // Input, TooLong, ...: about this input.
        other => PyValueError::new_err(format!("input {i}: {other}")),
    }
}

/// Texts given as one `str` (then `single` is true) or any iterable of `str` (a list, a tuple,
/// a numpy array of strings, a pandas Series, ...).
pub struct Texts {
    pub texts: Vec<String>,
    pub single: bool,
}

pub fn texts(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Texts> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Texts { texts: vec![s.to_cow()?.into_owned()], single: true });
    }
    let iter = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a str or a sequence of str, not {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    let mut out = Vec::new();
    for (i, item) in iter.enumerate() {
        let item = item?;
        match item.cast::<PyString>() {
            Ok(s) => out.push(s.to_cow()?.into_owned()),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "{what}[{i}] must be a str, not {}",
                    item.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                )))
            }
        }
    }
    Ok(Texts { texts: out, single: false })
}

/// A JSON value (the library's serialised results, the CLI's JSON lines) as Python objects.
pub fn json_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            PyList::new(py, items.iter().map(|x| json_to_py(py, x)).collect::<PyResult<Vec<_>>>()?)?.into_any()
        }
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, x) in map {
                d.set_item(k, json_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// Any serialisable library result as Python objects (the CLI prints the same values).
pub fn to_py<'py>(py: Python<'py>, v: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(v).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    json_to_py(py, &value)
}
