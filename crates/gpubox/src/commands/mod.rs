pub mod build;
pub mod cdi;
pub mod doctor;
pub mod inspect;
pub mod run;
