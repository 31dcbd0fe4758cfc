//! Hostile plugins: the host survives, the call ends, the error says who and what.
