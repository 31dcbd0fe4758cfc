//! Property tests over fuzzed input: manifests, plugin verdicts and API
//! requests. `PROPTEST_CASES` sets the cases per property (64 by default).

mod manifests;
mod requests;
mod verdicts;
