//! relation fields
