//! The W05 handoff, for any line protocol: the event loop's half of it, shared by every server
//! built on the course's loop and pool.
//!
//! The `handoff_server` binary (W05 and W06) and `kv_server` (W09) both run their sockets on one
//! `eventloop` Dispatcher and their CPU work on one `thread_pool`, with the results coming back
//! through a `task_queue` and an eventfd. What that takes on the loop — the listener and its
//! accept loop, the connection table, each connection's shared `Session`, the drain of finished
//! work, the list of connections waiting for room in the pool, the line-too-long linger and the
//! shutdown drain — is written once, in [`io_loop`], generic over what differs between the
//! servers: what a line means and how it reaches the pool (an [`io_loop::Service`]).
//!
//! ```text
//!   handoff_server (W05/W06)        kv_server (W09)
//!     Core: Service                   Core: Service
//!          \                            /
//!           io_loop::IoLoop<S>  ──  handoff_protocol::session::Session
//!                  │
//!     eventloop (Dispatcher, net, slab) · task_queue · thread_pool
//! ```
//!
//! [`startup`] holds the process set-up both binaries share: the signal mask, the pool, the
//! one-line worker panic report and the `listening on` line.

pub mod io_loop;
pub mod startup;
