//! W04: an epoll reactor and the Envoy-style threading layer built on it.
