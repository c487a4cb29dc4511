//! The parameter table lives in the library ([`modernbert::params`]): one declaration of names,
//! shapes and init kinds for inference loading, random weights, training init, optimizer groups
//! and export. Re-exported here for the training code.

pub use modernbert::params::{is_head_param, num_params, param_specs, HeadKind, ParamKind, ParamSpec, Params};
