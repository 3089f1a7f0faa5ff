//! W05 L02–L03: a work-stealing thread pool.
