//! The Stratus host agent: the agent loop ([`agent`]) and its protocol client ([`client`]),
//! and the data plane it drives: QEMU guests over QMP, their disks (qemu-img) and config
//! drives, and the accelerator probe; block storage volumes and backups ([`volumes`]) in a
//! storage pool ([`pool`]); VPC networking ([`network`]). [`sim`] is a simulated agent for control-plane scale tests.

pub mod accel;
pub mod agent;
pub mod cidata;
pub mod client;
pub mod console;
pub mod disk;
pub mod hostmetrics;
pub mod identity;
pub mod network;
pub mod pool;
pub mod qemu;
pub mod qmp;
pub mod sim;
pub mod volumes;
pub mod workers;

/// A random password of `len` letters and digits (VNC passwords are at most 8 characters).
pub fn random_password(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(len);
    let mut seed = uuid::Uuid::new_v4().as_u128();
    for _ in 0..len {
        out.push(ALPHABET[(seed % ALPHABET.len() as u128) as usize] as char);
        seed /= ALPHABET.len() as u128;
    }
    out
}
