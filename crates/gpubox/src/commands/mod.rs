pub mod cache;
pub mod cdi;
pub mod diff;
pub mod docs;
pub mod doctor;
pub mod init;
pub mod inspect;
pub mod nix;
