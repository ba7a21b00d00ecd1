//! The .deb format: reading control data and writing reproducible packages.
