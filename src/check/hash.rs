//! Fingerprints of world states: fast, and the same on every machine (no per-process random keys,
//! no CPU-dependent instructions), so that a run explores identically everywhere.

use std::hash::{BuildHasherDefault, Hash, Hasher};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// A multiply-rotate hasher over 8-byte words with a murmur3 finalizer. It starts from a non-zero
/// seed so that zero words still stir the state (from 0, any run of zero words would hash to 0).
pub struct StateHasher {
    h: u64,
}

impl Default for StateHasher {
    fn default() -> Self {
        StateHasher { h: 0x243F_6A88_85A3_08D3 }
    }
}

impl StateHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.h = (self.h ^ word).wrapping_mul(K).rotate_left(29);
    }
}

impl Hasher for StateHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.mix(i as u64);
    }
    fn finish(&self) -> u64 {
        let mut x = self.h;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
}

pub fn fingerprint<T: Hash>(t: &T) -> u64 {
    let mut h = StateHasher::default();
    t.hash(&mut h);
    h.finish()
}

/// For maps keyed by a fingerprint, which is already well mixed.
#[derive(Default)]
pub struct Identity(u64);

impl Hasher for Identity {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FingerprintMap<V> = std::collections::HashMap<u64, V, BuildHasherDefault<Identity>>;

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_TUPLE: u64 = 1705385088496362636;
    const PINNED_ZERO: u64 = 10852644790149860515;

    #[test]
    fn fingerprints_are_pinned_so_every_machine_dedups_the_same_states() {
        // Pinned values: if these move, state deduplication may differ between builds.
        assert_eq!(fingerprint(&(1u8, vec![2u64, 3], "abc")), PINNED_TUPLE);
        assert_eq!(fingerprint(&0u64), PINNED_ZERO);
    }

    #[test]
    fn order_and_runs_of_zeros_change_the_fingerprint() {
        assert_ne!(fingerprint(&vec![1u8, 2]), fingerprint(&vec![2u8, 1]));
        assert_ne!(fingerprint(&(0u64, 1u64)), fingerprint(&(1u64, 0u64)));
        assert_ne!(fingerprint(&0u64), fingerprint(&(0u64, 0u64)));
        assert_ne!(fingerprint(&0u64), 0);
    }
}
