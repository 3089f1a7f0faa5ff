//! W05 L01: the bounded task queue contract.
