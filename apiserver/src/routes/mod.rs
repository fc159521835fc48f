//! The REST routes, one module per resource of the seed's API.

pub mod customers;
