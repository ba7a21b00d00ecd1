//! dpkg version order
