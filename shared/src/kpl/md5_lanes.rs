//! MD5 of many messages at once ("multi-buffer" hashing, as Intel's ISA-L and minio's
//! md5-simd do): independent messages are hashed side by side in the 32-bit lanes of
//! SIMD registers, eight in AVX2's, sixteen in AVX-512's.
//!
//! Why: one MD5 is a serial chain of dependent additions (~0.55 GB/s on our EC2 cores),
//! and every KPL aggregate carries one that must be checked, so de-aggregating a single
//! aggregate can never reach 1 GB/s. A GetRecords page holds many aggregates; hashing
//! them together uses the SIMD width the single chain cannot. The lanes are still bound
//! by the chain's latency (each step waits for the last), so AVX-512's one-instruction
//! rotate and three-input logic, which shorten every step, count as much as its width.
//!
//! Without AVX2, or for a single message, it is the `md-5` crate, one message at a time.

use md5::{Digest, Md5};

/// The MD5 digests of `msgs`, in order.
pub fn md5_many(msgs: &[&[u8]]) -> Vec<[u8; 16]> {
    #[cfg(target_arch = "x86_64")]
    {
        // Sixteen lanes pay off once more than eight messages share them.
        if msgs.len() > 8 && lanes::avx512_available() {
            return lanes::md5_many_avx512(msgs);
        }
        if msgs.len() > 1 && std::arch::is_x86_feature_detected!("avx2") {
            return lanes::md5_many_avx2(msgs);
        }
    }
    msgs.iter().map(|m| md5_one(m)).collect()
}

/// Whether `md5_many` hashes side by side on this CPU (for benchmarks' labels).
pub fn side_by_side_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn md5_one(msg: &[u8]) -> [u8; 16] {
    Md5::digest(msg).into()
}

const IV: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// The padded end of a message: its last partial block, 0x80, zeros, the bit length.
struct Tail {
    buf: [u8; 128],
    blocks: usize,
}

impl Tail {
    fn of(msg: &[u8]) -> Tail {
        let rest = &msg[msg.len() / 64 * 64..];
        let mut buf = [0u8; 128];
        buf[..rest.len()].copy_from_slice(rest);
        buf[rest.len()] = 0x80;
        let blocks = if rest.len() < 56 { 1 } else { 2 };
        let bits = (msg.len() as u64).wrapping_mul(8);
        buf[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_le_bytes());
        Tail { buf, blocks }
    }
}

fn digest_of(state: [u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod lanes {
    use super::{digest_of, Tail, IV};
    use std::arch::x86_64::*;

    const LANES: usize = 8;

    /// One lane's current message.
    struct Job<'a> {
        index: usize,
        msg: &'a [u8],
        tail: Tail,
        /// Blocks of this message already hashed.
        done: usize,
    }

    impl<'a> Job<'a> {
        fn new(index: usize, msg: &'a [u8]) -> Self {
            Job {
                index,
                msg,
                tail: Tail::of(msg),
                done: 0,
            }
        }
        fn full_blocks(&self) -> usize {
            self.msg.len() / 64
        }
        fn total_blocks(&self) -> usize {
            self.full_blocks() + self.tail.blocks
        }
        /// The contiguous blocks from the next one to the end of the current segment
        /// (the message's whole blocks, then the padded tail).
        fn segment(&self) -> &[u8] {
            let full = self.full_blocks();
            if self.done < full {
                &self.msg[self.done * 64..full * 64]
            } else {
                &self.tail.buf[(self.done - full) * 64..self.tail.blocks * 64]
            }
        }
    }

    pub(super) fn md5_many_avx2(msgs: &[&[u8]]) -> Vec<[u8; 16]> {
        // SAFETY: the caller detected AVX2 at run time.
        run::<8>(msgs, |state, segments, n| unsafe {
            compress8(state, segments, n)
        })
    }

    pub(super) fn avx512_available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2")
    }

    pub(super) fn md5_many_avx512(msgs: &[&[u8]]) -> Vec<[u8; 16]> {
        // SAFETY: the caller checked `avx512_available` at run time.
        run::<16>(msgs, |state, segments, n| unsafe {
            compress16(state, segments, n)
        })
    }

    /// Hashes `msgs` in `L` lanes: each lane takes the next message when its own ends;
    /// `compress` runs `n` blocks of every lane's current segment.
    fn run<const L: usize>(
        msgs: &[&[u8]],
        mut compress: impl FnMut(&mut [[u32; L]; 4], &[&[u8]; L], usize),
    ) -> Vec<[u8; 16]> {
        let mut out = vec![[0u8; 16]; msgs.len()];
        // Longest first: lanes then run out of work at nearly the same time.
        let mut order: Vec<usize> = (0..msgs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(msgs[i].len()));
        let mut pending = order.into_iter();
        let mut jobs: [Option<Job>; L] = std::array::from_fn(|_| None);
        // state[word][lane]
        let mut state = [[0u32; L]; 4];
        loop {
            for (lane, slot) in jobs.iter_mut().enumerate() {
                if slot.is_none() {
                    if let Some(i) = pending.next() {
                        *slot = Some(Job::new(i, msgs[i]));
                        for (w, iv) in IV.iter().enumerate() {
                            state[w][lane] = *iv;
                        }
                    }
                }
            }
            let active = jobs.iter().filter(|j| j.is_some()).count();
            if active == 0 {
                break;
            }
            if active == 1 {
                // Nothing left to share the registers with: the scalar chain is faster.
                let (lane, job) = jobs
                    .iter()
                    .enumerate()
                    .find_map(|(l, j)| j.as_ref().map(|j| (l, j)))
                    .expect("one active lane");
                let mut st = [0u32; 4];
                for (w, s) in st.iter_mut().enumerate() {
                    *s = state[w][lane];
                }
                let full = job.full_blocks();
                if job.done < full {
                    let (blocks, _) = job.msg[job.done * 64..full * 64].as_chunks::<64>();
                    md5::block_api::compress(&mut st, blocks);
                }
                let tail_from = job.done.saturating_sub(full);
                let (blocks, _) = job.tail.buf[tail_from * 64..job.tail.blocks * 64].as_chunks();
                md5::block_api::compress(&mut st, blocks);
                out[job.index] = digest_of(st);
                break;
            }
            let n = jobs
                .iter()
                .flatten()
                .map(|j| j.segment().len() / 64)
                .min()
                .expect("active lanes");
            let any = jobs
                .iter()
                .flatten()
                .next()
                .expect("active lanes")
                .segment();
            let segments: [&[u8]; L] =
                std::array::from_fn(|l| jobs[l].as_ref().map_or(any, |j| j.segment()));
            compress(&mut state, &segments, n);
            for (lane, slot) in jobs.iter_mut().enumerate() {
                let Some(job) = slot else { continue };
                job.done += n;
                if job.done == job.total_blocks() {
                    out[job.index] = digest_of(std::array::from_fn(|w| state[w][lane]));
                    *slot = None;
                }
            }
        }
        out
    }

    const K: [u32; 64] = [
        0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613,
        0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193,
        0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d,
        0x02441453, 0xd8a1e681, 0xe7d3fbc8, 0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
        0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122,
        0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
        0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665, 0xf4292244,
        0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
        0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb,
        0xeb86d391,
    ];

    /// Which message word step `i` adds (RFC 1321).
    const G: [usize; 64] = {
        let mut g = [0usize; 64];
        let mut i = 0;
        while i < 64 {
            g[i] = match i / 16 {
                0 => i,
                1 => (5 * i + 1) % 16,
                2 => (3 * i + 5) % 16,
                _ => (7 * i) % 16,
            };
            i += 1;
        }
        g
    };

    macro_rules! fun_f {
        ($b:ident, $c:ident, $d:ident) => {
            _mm256_xor_si256($d, _mm256_and_si256($b, _mm256_xor_si256($c, $d)))
        };
    }
    macro_rules! fun_g {
        ($b:ident, $c:ident, $d:ident) => {
            _mm256_xor_si256($c, _mm256_and_si256($d, _mm256_xor_si256($b, $c)))
        };
    }
    macro_rules! fun_h {
        ($b:ident, $c:ident, $d:ident) => {
            _mm256_xor_si256($b, _mm256_xor_si256($c, $d))
        };
    }
    macro_rules! fun_i {
        ($b:ident, $c:ident, $d:ident) => {
            _mm256_xor_si256(
                $c,
                _mm256_or_si256($b, _mm256_xor_si256($d, _mm256_set1_epi32(-1))),
            )
        };
    }
    /// a = b + rotl(a + fun(b, c, d) + K[i] + M[G[i]], s)
    macro_rules! step {
        ($fun:ident, $m:ident, $i:expr, $s:literal, $a:ident, $b:ident, $c:ident, $d:ident) => {
            let t = _mm256_add_epi32(
                _mm256_add_epi32($a, $fun!($b, $c, $d)),
                _mm256_add_epi32($m[G[$i]], _mm256_set1_epi32(K[$i] as i32)),
            );
            let r = _mm256_or_si256(
                _mm256_slli_epi32::<$s>(t),
                _mm256_srli_epi32::<{ 32 - $s }>(t),
            );
            $a = _mm256_add_epi32($b, r);
        };
    }
    /// Four steps, the registers' roles rotating as the RFC's do.
    macro_rules! quad {
        ($fun:ident, $m:ident, $i:expr, $s0:literal, $s1:literal, $s2:literal, $s3:literal, $a:ident, $b:ident, $c:ident, $d:ident) => {
            step!($fun, $m, $i, $s0, $a, $b, $c, $d);
            step!($fun, $m, $i + 1, $s1, $d, $a, $b, $c);
            step!($fun, $m, $i + 2, $s2, $c, $d, $a, $b);
            step!($fun, $m, $i + 3, $s3, $b, $c, $d, $a);
        };
    }

    /// One block's 64 steps: four rounds of four `$quad`s with the RFC's shifts, the
    /// round functions `$f`, `$g`, `$h`, `$i` (macros or truth tables, as `$quad` takes).
    macro_rules! rounds {
        ($quad:ident, $f:tt, $g:tt, $h:tt, $i:tt, $m:ident, $a:ident, $b:ident, $c:ident, $d:ident) => {
            $quad!($f, $m, 0, 7, 12, 17, 22, $a, $b, $c, $d);
            $quad!($f, $m, 4, 7, 12, 17, 22, $a, $b, $c, $d);
            $quad!($f, $m, 8, 7, 12, 17, 22, $a, $b, $c, $d);
            $quad!($f, $m, 12, 7, 12, 17, 22, $a, $b, $c, $d);
            $quad!($g, $m, 16, 5, 9, 14, 20, $a, $b, $c, $d);
            $quad!($g, $m, 20, 5, 9, 14, 20, $a, $b, $c, $d);
            $quad!($g, $m, 24, 5, 9, 14, 20, $a, $b, $c, $d);
            $quad!($g, $m, 28, 5, 9, 14, 20, $a, $b, $c, $d);
            $quad!($h, $m, 32, 4, 11, 16, 23, $a, $b, $c, $d);
            $quad!($h, $m, 36, 4, 11, 16, 23, $a, $b, $c, $d);
            $quad!($h, $m, 40, 4, 11, 16, 23, $a, $b, $c, $d);
            $quad!($h, $m, 44, 4, 11, 16, 23, $a, $b, $c, $d);
            $quad!($i, $m, 48, 6, 10, 15, 21, $a, $b, $c, $d);
            $quad!($i, $m, 52, 6, 10, 15, 21, $a, $b, $c, $d);
            $quad!($i, $m, 56, 6, 10, 15, 21, $a, $b, $c, $d);
            $quad!($i, $m, 60, 6, 10, 15, 21, $a, $b, $c, $d);
        };
    }

    /// `n` consecutive blocks of each lane's segment, state kept in registers throughout.
    #[target_feature(enable = "avx2")]
    fn compress8(state: &mut [[u32; LANES]; 4], segments: &[&[u8]; LANES], n: usize) {
        for s in segments {
            assert!(s.len() >= n * 64, "segment shorter than the blocks asked");
        }
        let load = |words: &[u32; LANES]| {
            // SAFETY: reads 32 bytes from a 32-byte array.
            unsafe { _mm256_loadu_si256(words.as_ptr().cast()) }
        };
        let (mut a, mut b, mut c, mut d) = (
            load(&state[0]),
            load(&state[1]),
            load(&state[2]),
            load(&state[3]),
        );
        for block in 0..n {
            let at = block * 64;
            // SAFETY: every segment holds at least n * 64 bytes (asserted above).
            let rows = |half: usize| -> [__m256i; LANES] {
                std::array::from_fn(|l| unsafe {
                    _mm256_loadu_si256(segments[l].as_ptr().add(at + half * 32).cast())
                })
            };
            let lo = transpose(rows(0));
            let hi = transpose(rows(1));
            let m: [__m256i; 16] = std::array::from_fn(|w| if w < 8 { lo[w] } else { hi[w - 8] });
            let (a0, b0, c0, d0) = (a, b, c, d);
            rounds!(quad, fun_f, fun_g, fun_h, fun_i, m, a, b, c, d);
            a = _mm256_add_epi32(a, a0);
            b = _mm256_add_epi32(b, b0);
            c = _mm256_add_epi32(c, c0);
            d = _mm256_add_epi32(d, d0);
        }
        for (words, v) in state.iter_mut().zip([a, b, c, d]) {
            // SAFETY: writes 32 bytes into a 32-byte array.
            unsafe { _mm256_storeu_si256(words.as_mut_ptr().cast(), v) };
        }
    }

    /// The four round functions as `vpternlogd` truth tables of (b, c, d).
    const TERN_F: i32 = 0xca; // b ? c : d
    const TERN_G: i32 = 0xe4; // d ? b : c
    const TERN_H: i32 = 0x96; // b ^ c ^ d
    const TERN_I: i32 = 0x39; // c ^ (b | !d)

    /// a = b + rotl(a + fun(b, c, d) + K[i] + M[G[i]], s), in one rotate and one
    /// three-input logic instruction.
    macro_rules! step16 {
        ($tern:expr, $m:ident, $i:expr, $s:literal, $a:ident, $b:ident, $c:ident, $d:ident) => {
            let t = _mm512_add_epi32(
                _mm512_add_epi32($a, _mm512_ternarylogic_epi32::<{ $tern }>($b, $c, $d)),
                _mm512_add_epi32($m[G[$i]], _mm512_set1_epi32(K[$i] as i32)),
            );
            $a = _mm512_add_epi32($b, _mm512_rol_epi32::<$s>(t));
        };
    }
    macro_rules! quad16 {
        ($tern:expr, $m:ident, $i:expr, $s0:literal, $s1:literal, $s2:literal, $s3:literal, $a:ident, $b:ident, $c:ident, $d:ident) => {
            step16!($tern, $m, $i, $s0, $a, $b, $c, $d);
            step16!($tern, $m, $i + 1, $s1, $d, $a, $b, $c);
            step16!($tern, $m, $i + 2, $s2, $c, $d, $a, $b);
            step16!($tern, $m, $i + 3, $s3, $b, $c, $d, $a);
        };
    }

    /// As `compress8`, sixteen lanes in AVX-512 registers; the message words of lanes
    /// 0-7 and 8-15 are transposed as `compress8` does and joined.
    #[target_feature(enable = "avx2,avx512f")]
    fn compress16(state: &mut [[u32; 16]; 4], segments: &[&[u8]; 16], n: usize) {
        for s in segments {
            assert!(s.len() >= n * 64, "segment shorter than the blocks asked");
        }
        let load = |words: &[u32; 16]| {
            // SAFETY: reads 64 bytes from a 64-byte array.
            unsafe { _mm512_loadu_si512(words.as_ptr().cast()) }
        };
        let (mut a, mut b, mut c, mut d) = (
            load(&state[0]),
            load(&state[1]),
            load(&state[2]),
            load(&state[3]),
        );
        for block in 0..n {
            let at = block * 64;
            // SAFETY: every segment holds at least n * 64 bytes (asserted above).
            let rows = |first: usize, half: usize| -> [__m256i; 8] {
                std::array::from_fn(|l| unsafe {
                    _mm256_loadu_si256(segments[first + l].as_ptr().add(at + half * 32).cast())
                })
            };
            let (lo0, hi0) = (transpose(rows(0, 0)), transpose(rows(0, 1)));
            let (lo1, hi1) = (transpose(rows(8, 0)), transpose(rows(8, 1)));
            let m: [__m512i; 16] = std::array::from_fn(|w| {
                let (x, y) = if w < 8 {
                    (lo0[w], lo1[w])
                } else {
                    (hi0[w - 8], hi1[w - 8])
                };
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(x), y)
            });
            let (a0, b0, c0, d0) = (a, b, c, d);
            rounds!(quad16, TERN_F, TERN_G, TERN_H, TERN_I, m, a, b, c, d);
            a = _mm512_add_epi32(a, a0);
            b = _mm512_add_epi32(b, b0);
            c = _mm512_add_epi32(c, c0);
            d = _mm512_add_epi32(d, d0);
        }
        for (words, v) in state.iter_mut().zip([a, b, c, d]) {
            // SAFETY: writes 64 bytes into a 64-byte array.
            unsafe { _mm512_storeu_si512(words.as_mut_ptr().cast(), v) };
        }
    }

    /// Rows (one lane's eight message words each) to columns (one word of every lane).
    #[target_feature(enable = "avx2")]
    fn transpose(r: [__m256i; LANES]) -> [__m256i; LANES] {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        // Words 0|4, 1|5, 2|6, 3|7 of lanes 0-3 and of lanes 4-7.
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lanes_equal_one_at_a_time() {
            if !std::arch::is_x86_feature_detected!("avx2") {
                return; // md5_many never takes this path on such a CPU
            }
            let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 + 1) as u8).collect();
            let msgs: Vec<&[u8]> = (0..40).map(|i| &data[..i * 113 % 5000]).collect();
            let want: Vec<[u8; 16]> = msgs.iter().map(|m| super::super::md5_one(m)).collect();
            assert_eq!(md5_many_avx2(&msgs), want);
        }

        #[test]
        fn sixteen_lanes_equal_one_at_a_time() {
            if !avx512_available() {
                eprintln!("no AVX-512 on this CPU: the sixteen-lane path is not tested here");
                return; // md5_many never takes this path on such a CPU
            }
            // Every padding edge, more messages than lanes, lengths that end lanes at
            // different times, and fewer messages than lanes.
            let data: Vec<u8> = (0..5000u32).map(|i| (i * 31 + 1) as u8).collect();
            let mut msgs: Vec<&[u8]> = (0..=300).map(|n| &data[..n]).collect();
            msgs.extend((0..40).map(|i| &data[..i * 113 % 5000]));
            for msgs in [&msgs[..], &msgs[290..300], &msgs[..3]] {
                let want: Vec<[u8; 16]> = msgs.iter().map(|m| super::super::md5_one(m)).collect();
                assert_eq!(md5_many_avx512(msgs), want);
            }
        }

        #[test]
        fn the_truth_tables_are_the_round_functions() {
            for bits in 0..8u32 {
                let (b, c, d) = (bits >> 2 & 1, bits >> 1 & 1, bits & 1);
                let f = (b & c) | (!b & d) & 1;
                let g = (b & d) | (c & !d & 1);
                let h = b ^ c ^ d;
                let i = c ^ (b | (!d & 1));
                for (name, table, want) in [
                    ("F", TERN_F, f),
                    ("G", TERN_G, g),
                    ("H", TERN_H, h),
                    ("I", TERN_I, i),
                ] {
                    assert_eq!((table as u32 >> bits) & 1, want, "{name} at {b}{c}{d}");
                }
            }
        }

        #[test]
        fn constants_are_the_rfcs() {
            for (i, k) in K.iter().enumerate() {
                let want = ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32;
                assert_eq!(*k, want, "K[{i}]");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn each_alone(msgs: &[&[u8]]) -> Vec<[u8; 16]> {
        msgs.iter().map(|m| md5_one(m)).collect()
    }

    #[test]
    fn known_answers() {
        // RFC 1321's test suite.
        let msgs: [&[u8]; 4] = [
            b"",
            b"abc",
            b"message digest",
            b"abcdefghijklmnopqrstuvwxyz",
        ];
        let hex: Vec<String> = md5_many(&msgs)
            .iter()
            .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        assert_eq!(
            hex,
            [
                "d41d8cd98f00b204e9800998ecf8427e",
                "900150983cd24fb0d6963f7d28e17f72",
                "f96b697d7cb7938d525a2f31aaf161d0",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ]
        );
    }

    #[test]
    fn every_padding_length_side_by_side() {
        // Lengths around every padding edge (55/56/63/64/119/120/128), all at once.
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let msgs: Vec<&[u8]> = (0..=300).map(|n| &data[..n]).collect();
        assert_eq!(md5_many(&msgs), each_alone(&msgs));
    }

    #[test]
    fn one_long_message_among_short_ones() {
        // The long one ends alone in its lane (the scalar finish).
        let long = vec![0xabu8; 100_003];
        let short = vec![0x11u8; 70];
        let msgs: Vec<&[u8]> = vec![&short, &long, &short, b"", &short];
        assert_eq!(md5_many(&msgs), each_alone(&msgs));
        assert_eq!(md5_many(&[]), Vec::<[u8; 16]>::new());
        assert_eq!(md5_many(&[&long]), each_alone(&[&long]));
    }

    proptest! {
        #[test]
        fn equals_one_at_a_time(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..24)) {
            let refs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
            prop_assert_eq!(md5_many(&refs), each_alone(&refs));
        }
    }
}
