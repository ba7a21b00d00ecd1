//! zchroot: build Debian roots for foreign architectures from the Debian archive,
//! run commands in them, and build kernel-module packages for the target.
//!
//! The library never prints: progress goes through [`report::Reporter`].
//! `unsafe` and raw system calls live in [`sys`] alone, each with a
//! `SAFETY` note; everywhere else the compiler refuses them.

#![deny(unsafe_code)]

pub mod archive;
pub mod atomic;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod deb;
pub mod doctor;
pub mod enter;
pub mod export;
pub mod host;
pub mod interrupt;
pub mod kmod;
pub mod manifest;
pub mod paths;
pub mod qemu;
pub mod repo;
pub mod report;
pub mod rootdir;
pub mod rootfs;
pub mod sandbox;
#[allow(unsafe_code)]
pub mod sys;
pub mod targets;
pub mod teardown;
pub mod update;
