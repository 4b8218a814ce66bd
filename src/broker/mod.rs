//! The broker core (sans-IO).
