//! Gorilla-compressed chunks (Pelkonen et al., VLDB 2015, as Prometheus uses them):
//! timestamps as delta-of-deltas in variable bit widths, values XOR-ed with the previous
//! one and stored as their meaningful bits. Regular scrapes of slowly changing values cost
//! one to two bytes a sample instead of sixteen.

/// Samples per chunk before a new one is cut (Prometheus's figure: a chunk then spans
/// 30 min at a 15 s interval, small enough to decode for a query cheaply).
pub const CHUNK_SAMPLES: u16 = 120;

#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = it is full, or there is none).
    used: u8,
}

impl BitWriter {
    fn bit(&mut self, b: bool) {
        if self.used == 0 {
            self.bytes.push(0);
        }
        if b {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> self.used;
        }
        self.used = (self.used + 1) % 8;
    }

    /// The low `n` bits of `v`, most significant first.
    fn bits(&mut self, v: u64, n: u8) {
        for i in (0..n).rev() {
            self.bit((v >> i) & 1 == 1);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let b = byte & (0x80 >> (self.pos % 8)) != 0;
        self.pos += 1;
        Some(b)
    }

    fn bits(&mut self, n: u8) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | self.bit()? as u64;
        }
        Some(v)
    }
}

/// Delta-of-delta buckets: (prefix bits, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

fn fits(v: i64, bits: u8) -> bool {
    let half = 1i64 << (bits - 1);
    -half < v && v <= half
}

/// One chunk of one series' samples, in time order.
#[derive(Debug, Clone, Default)]
pub struct Chunk {
    w: BitWriter,
    count: u16,
    min_t: i64,
    max_t: i64,
    // Appender state.
    delta: i64,
    value: u64,
    leading: u8,
    trailing: u8,
}

impl Chunk {
    pub fn new() -> Chunk {
        Chunk {
            leading: 0xff,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count >= CHUNK_SAMPLES
    }

    pub fn min_time(&self) -> i64 {
        self.min_t
    }

    pub fn max_time(&self) -> i64 {
        self.max_t
    }

    /// Encoded size in bytes.
    pub fn bytes(&self) -> usize {
        self.w.bytes.len()
    }

    /// Append a sample later than the last one (the caller drops out-of-order samples).
    pub fn append(&mut self, t: i64, v: f64) {
        let bits = v.to_bits();
        match self.count {
            0 => {
                self.w.bits(t as u64, 64);
                self.w.bits(bits, 64);
                self.min_t = t;
            }
            _ => {
                let delta = t.wrapping_sub(self.max_t);
                let dod = delta.wrapping_sub(self.delta);
                self.write_dod(dod);
                self.delta = delta;
                self.write_value(bits);
            }
        }
        self.max_t = t;
        self.value = bits;
        self.count += 1;
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.w.bit(false);
            return;
        }
        for (prefix, plen, vbits) in DOD_BUCKETS {
            if fits(dod, vbits) {
                self.w.bits(prefix, plen);
                self.w.bits(dod as u64, vbits);
                return;
            }
        }
        self.w.bits(0b1111, 4);
        self.w.bits(dod as u64, 64);
    }

    fn write_value(&mut self, bits: u64) {
        let x = bits ^ self.value;
        if x == 0 {
            self.w.bit(false);
            return;
        }
        self.w.bit(true);
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            // Fits the previous window of meaningful bits.
            self.w.bit(false);
            let n = 64 - self.leading - self.trailing;
            self.w.bits(x >> self.trailing, n);
        } else {
            self.w.bit(true);
            let n = 64 - leading - trailing;
            self.w.bits(leading as u64, 5);
            // 64 meaningful bits do not fit in six: written as 0.
            self.w.bits((n % 64) as u64, 6);
            self.w.bits(x >> trailing, n);
            self.leading = leading;
            self.trailing = trailing;
        }
    }

    /// Every sample, in order.
    pub fn samples(&self) -> Vec<(i64, f64)> {
        let mut out = Vec::with_capacity(self.count as usize);
        let mut r = BitReader {
            bytes: &self.w.bytes,
            pos: 0,
        };
        let (mut t, mut delta, mut value) = (0i64, 0i64, 0u64);
        let (mut leading, mut trailing) = (0u8, 0u8);
        for i in 0..self.count {
            let step = (|| -> Option<()> {
                if i == 0 {
                    t = r.bits(64)? as i64;
                    value = r.bits(64)?;
                    return Some(());
                }
                let dod = Self::read_dod(&mut r)?;
                delta = delta.wrapping_add(dod);
                t = t.wrapping_add(delta);
                if r.bit()? {
                    if r.bit()? {
                        leading = r.bits(5)? as u8;
                        let n = match r.bits(6)? as u8 {
                            0 => 64,
                            n => n,
                        };
                        trailing = 64 - leading - n;
                    }
                    let n = 64 - leading - trailing;
                    value ^= r.bits(n)? << trailing;
                }
                Some(())
            })();
            if step.is_none() {
                break;
            }
            out.push((t, f64::from_bits(value)));
        }
        out
    }

    fn read_dod(r: &mut BitReader<'_>) -> Option<i64> {
        let mut ones = 0;
        while ones < 4 && r.bit()? {
            ones += 1;
        }
        let bits = match ones {
            0 => return Some(0),
            4 => 64,
            n => DOD_BUCKETS[n - 1].2,
        };
        let raw = r.bits(bits)?;
        // Sign-extend.
        Some(if bits == 64 {
            raw as i64
        } else {
            let shift = 64 - bits;
            ((raw << shift) as i64) >> shift
        })
    }

    /// The encoded form, for snapshots: count, times, appender state, bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.min_t.to_le_bytes());
        out.extend_from_slice(&self.max_t.to_le_bytes());
        out.extend_from_slice(&self.delta.to_le_bytes());
        out.extend_from_slice(&self.value.to_le_bytes());
        out.push(self.leading);
        out.push(self.trailing);
        out.push(self.w.used);
        out.extend_from_slice(&(self.w.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.w.bytes);
    }

    pub fn decode(b: &mut &[u8]) -> Option<Chunk> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Some(h)
        }
        let i64_of = |s: &[u8]| i64::from_le_bytes(s.try_into().unwrap_or([0; 8]));
        let count = u16::from_le_bytes(take(b, 2)?.try_into().ok()?);
        let min_t = i64_of(take(b, 8)?);
        let max_t = i64_of(take(b, 8)?);
        let delta = i64_of(take(b, 8)?);
        let value = u64::from_le_bytes(take(b, 8)?.try_into().ok()?);
        let st = take(b, 3)?;
        let len = u32::from_le_bytes(take(b, 4)?.try_into().ok()?) as usize;
        let bytes = take(b, len)?.to_vec();
        Some(Chunk {
            w: BitWriter { bytes, used: st[2] },
            count,
            min_t,
            max_t,
            delta,
            value,
            leading: st[0],
            trailing: st[1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[(i64, f64)]) -> Chunk {
        let mut c = Chunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        let got = c.samples();
        assert_eq!(got.len(), samples.len());
        for (g, w) in got.iter().zip(samples) {
            assert_eq!(g.0, w.0);
            assert!(
                g.1.to_bits() == w.1.to_bits(),
                "value {} != {} at {}",
                g.1,
                w.1,
                w.0
            );
        }
        c
    }

    #[test]
    fn regular_samples_compress_to_a_few_bytes() {
        let s: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, (i % 7) as f64))
            .collect();
        let c = round_trip(&s);
        // Raw, a sample is 16 bytes; a changing small-integer gauge takes under 3.
        assert!(c.bytes() < 120 * 3, "{} bytes", c.bytes());
        // A constant gauge: two bits a sample after the first (16 bytes).
        let s: Vec<(i64, f64)> = (0..120).map(|i| (i * 10_000, 42.5)).collect();
        let c = round_trip(&s);
        assert!(c.bytes() < 60, "{} bytes", c.bytes());
    }

    #[test]
    fn any_values_and_gaps_round_trip() {
        let mut s = Vec::new();
        let mut t = -5_000i64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..120 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Jitter, long gaps, a huge jump; odd floats (NaN, infinities, -0).
            t += match i % 10 {
                0 => 1,
                3 => 3_600_000,
                7 => 40_000_000_000,
                _ => 15_000 + (x % 997) as i64,
            };
            let v = match i % 13 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => -0.0,
                3 => f64::MIN_POSITIVE,
                _ => f64::from_bits(x) % 1e12,
            };
            s.push((t, v));
        }
        let c = round_trip(&s);
        let mut enc = Vec::new();
        c.encode(&mut enc);
        let mut slice = enc.as_slice();
        let mut d = Chunk::decode(&mut slice).unwrap();
        assert!(slice.is_empty());
        assert_eq!(d.samples().len(), 120);
        // A decoded chunk keeps appending where it left off.
        let mut c2 = Chunk::new();
        for &(t, v) in &s[..60] {
            c2.append(t, v);
        }
        let mut enc = Vec::new();
        c2.encode(&mut enc);
        let mut d2 = Chunk::decode(&mut enc.as_slice()).unwrap();
        for &(t, v) in &s[60..] {
            d2.append(t, v);
        }
        let a: Vec<u64> = d2.samples().iter().map(|s| s.1.to_bits()).collect();
        let b: Vec<u64> = s.iter().map(|s| s.1.to_bits()).collect();
        assert_eq!(a, b);
        d.append(t + 1, 1.0);
        assert_eq!(d.len(), 121);
    }
}
