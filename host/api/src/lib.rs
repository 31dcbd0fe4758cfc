//! JobSet v1alpha2 API: types, names and labels, the CRD, defaulting and validation.
#![forbid(unsafe_code)]
