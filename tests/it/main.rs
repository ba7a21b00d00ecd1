//! Integration tests: one binary. The archive client runs against a real
//! HTTP server on 127.0.0.1 serving an archive generated and signed here;
//! `debian` runs against the real Debian archive. `common` is what every
//! module shares (the zchroot runner, homes, skips); `archive`, `server`
//! and `env` make the test archive.

mod archive;
mod archive_client;
mod build;
mod cli;
mod common;
mod confined;
mod create_options;
mod debian;
mod doctor;
mod env;
mod escape;
mod export;
mod host_binfmt;
mod hostile_archive;
mod json;
mod kernel_fixture;
mod kernel_sets;
mod network;
mod progress;
mod readonly;
mod repo_hardening;
mod rootfs;
mod sandbox;
mod server;
mod teardown;
mod template;
mod terminal;
mod update;
mod vendor_archive;
mod vendor_headers;
