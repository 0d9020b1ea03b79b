//! A deterministic, seedable draw (splitmix64): the capture model's choice of the pods a restart
//! leaves outside the mesh, the chaos test's moments, the simulator's ports. Small and good
//! enough to pick things; not for anything that needs real randomness.

pub struct Draw(pub u64);

impl Draw {
    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n
    }

    /// Uniform in [lo, hi).
    pub fn secs(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.u64() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }

    /// `n` distinct indexes below `len`.
    pub fn pick(&mut self, n: usize, len: usize) -> Vec<usize> {
        let mut out = Vec::new();
        while out.len() < n.min(len) {
            let i = self.below(len as u64) as usize;
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out
    }
}
