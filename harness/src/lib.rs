pub mod matrix;
pub mod report;
pub mod vm;
