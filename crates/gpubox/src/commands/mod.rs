pub mod cache;
pub mod cdi;
pub mod diff;
pub mod doctor;
pub mod inspect;
pub mod nix;
