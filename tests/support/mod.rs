pub mod ops;
pub mod seeds;
