//! One attention head's K and V, stored in the layout this target's kernels want, and the two products of the
//! attention step: the scores `K q` (16-bit) and the context `P V` (8-bit probabilities times 8-bit values).
//!
//! On x86-64 CPUs with AVX-512 VNNI, keys are packed 16 to a vector for `vpdpwssd` and values four tokens to a
//! word for `vpdpbusd` (one lane per key, one lane per channel); elsewhere K is row-major and V transposed, and the
//! products go through [`super::gemv_i16_i32`] and [`super::gemv_u8_i8_i32_offset`]. Every layout gives the same
//! integers as [`reference::gemv_i16_i32`] and [`reference::gemv_u8_i8_i32`] (tests in `kernels::tests`).

use super::reference;

/// `i16` elements a head's K needs for `seq` tokens of `d` values.
pub const fn keys_len(seq: usize, d: usize) -> usize {
    // Packed: keys in groups of 16, channels in pairs.
    packed_len(seq.div_ceil(16) * 16 * d.div_ceil(2) * 2, seq * d)
}

/// `i8` elements a head's V needs for `seq` tokens of `d` values.
pub const fn values_len(seq: usize, d: usize) -> usize {
    // Packed: tokens in words of 4, channels in groups of 16.
    packed_len(seq.div_ceil(4) * 4 * d.div_ceil(16) * 16, seq * d)
}

/// The larger of the packed and the plain size where the packed layout exists (x86-64), the plain size elsewhere.
const fn packed_len(packed: usize, plain: usize) -> usize {
    if cfg!(target_arch = "x86_64") && packed > plain {
        packed
    } else {
        plain
    }
}

/// `buf[..len]` and whether this CPU takes the packed layout, whose padding (never written by `set`) must read as
/// zero; `None` when `buf` is shorter than `len`.
fn layout_buf<T: Copy + Default>(buf: &mut [T], len: usize) -> Option<(&mut [T], bool)> {
    let buf = buf.get_mut(..len)?;
    let packed = packed();
    if packed {
        buf.fill(T::default());
    }
    Some((buf, packed))
}

/// Whether this CPU takes the packed layouts (decided once per call site; stable for the process).
#[inline]
fn packed() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        super::x86::vnni512_available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The keys of one head: `seq` rows of `d` 16-bit values in `buf` ([`keys_len`]).
pub struct Keys<'a> {
    buf: &'a mut [i16],
    seq: usize,
    d: usize,
    packed: bool,
}

impl<'a> Keys<'a> {
    /// Keys for `seq` tokens of `d` values in `buf`; `None` when `buf` is shorter than [`keys_len`].
    pub fn new(buf: &'a mut [i16], seq: usize, d: usize) -> Option<Self> {
        let (buf, packed) = layout_buf(buf, keys_len(seq, d))?;
        Some(Keys {
            buf,
            seq,
            d,
            packed,
        })
    }

    /// Stores key `t`'s values (`row[..d]`; a shorter row leaves the rest as it was).
    pub fn set(&mut self, t: usize, row: &[i16]) {
        if t >= self.seq {
            return;
        }
        let d = self.d;
        if self.packed {
            // Key t is lane t % 16 of group t / 16; channel pair c / 2 is word c / 2 of that lane, 32 values
            // after the pair before it. (Slices of the pairs rather than an index per value: the bounds checks
            // and index arithmetic of the per-value form were most of this loop's cost.)
            let d2 = d.div_ceil(2);
            let base = (t / 16) * d2 * 32 + (t % 16) * 2;
            let n = d.min(row.len());
            for (word, pair) in self.buf[base..].chunks_mut(32).zip(row[..n].chunks(2)) {
                word.iter_mut().zip(pair).for_each(|(w, &v)| *w = v);
            }
        } else {
            let n = d.min(row.len());
            self.buf[t * d..t * d + n].copy_from_slice(&row[..n]);
        }
    }

    /// `out[j] = k_j . q` for every key `j < min(seq, out.len())`, exact in `i32` with wrapping adds (as
    /// [`reference::gemv_i16_i32`]).
    pub fn scores(&self, q: &[i16], out: &mut [i32]) {
        let (seq, d) = (self.seq, self.d);
        let m = seq.min(out.len());
        let out = &mut out[..m];
        #[cfg(target_arch = "x86_64")]
        if self.packed && q.len() >= d {
            // SAFETY: `packed` means AVX-512 F and VNNI are available; `buf` holds `keys_len(seq, d)` values in
            // the packed layout, `q` at least `d` values, `out` at most `seq`.
            return unsafe { super::x86::scores_vnni(self.buf, seq, d, q, out) };
        }
        super::gemv_i16_i32(&self.buf[..seq * d], d, q, out)
    }

    /// [`Self::scores`] for `queries` queries at once: query `i` is `q[i * d..][..d]`, its scores go to
    /// `out[i * stride..]` (at most `min(seq, stride)` of them). On AArch64 the products run in tiles of four
    /// queries by four keys.
    pub fn scores_many(&self, q: &[i16], queries: usize, out: &mut [i32], stride: usize) {
        let (seq, d) = (self.seq, self.d);
        #[cfg(target_arch = "x86_64")]
        if self.packed {
            for (i, o) in out.chunks_mut(stride.max(1)).take(queries).enumerate() {
                let qi = q.get(i.saturating_mul(d)..).unwrap_or(&[]);
                self.scores(&qi[..d.min(qi.len())], o);
            }
            return;
        }
        super::gemm_i16_i32(&self.buf[..seq * d], d, seq, q, queries, out, stride)
    }
}

/// The values of one head: `seq` rows of `d` 8-bit values in `buf` ([`values_len`]).
pub struct Values<'a> {
    buf: &'a mut [i8],
    seq: usize,
    d: usize,
    packed: bool,
}

impl<'a> Values<'a> {
    /// Values for `seq` tokens of `d` values in `buf`; `None` when `buf` is shorter than [`values_len`].
    pub fn new(buf: &'a mut [i8], seq: usize, d: usize) -> Option<Self> {
        let (buf, packed) = layout_buf(buf, values_len(seq, d))?;
        Some(Values {
            buf,
            seq,
            d,
            packed,
        })
    }

    /// Stores token `t`'s values (`row[..d]`; a shorter row leaves the rest as it was).
    pub fn set(&mut self, t: usize, row: &[i8]) {
        if t >= self.seq {
            return;
        }
        let (seq, d) = (self.seq, self.d);
        if self.packed {
            // Tokens 4 to a word: token t is byte t % 4 of channel c's word in row t / 4 (channels padded to 16).
            let d16 = d.div_ceil(16) * 16;
            let base = (t / 4) * d16 * 4 + t % 4;
            for (b, &v) in self.buf[base..]
                .iter_mut()
                .step_by(4)
                .zip(row.iter().take(d))
            {
                *b = v;
            }
        } else {
            // Channel c of token t is byte t of row c. A strided store per byte: with bounds checks it took 9
            // instructions per value on AArch64, a tenth of the attention's cost at 32 tokens.
            let n = d.min(row.len());
            assert!(self.buf.len() >= seq * d);
            let p = self.buf.as_mut_ptr();
            for (c, &v) in row[..n].iter().enumerate() {
                // SAFETY: `c < n <= d` and `t < seq` (checked above), so `c * seq + t < seq * d <= buf.len()`
                // (asserted above).
                unsafe { *p.add(c * seq + t) = v };
            }
        }
    }

    /// What [`Self::attend`] needs besides the values, once all are stored: the transposed layout's row sums
    /// (`sums[c]`, `d` of them; untouched for the packed layout, which needs none). The transposed layout's -128
    /// values become -127 first: the quantiser never produces -128, and the multi-query product on AArch64 needs
    /// it absent (its 16-bit lanes hold two products).
    pub fn prepare_sums(&mut self, sums: &mut [i32]) {
        if self.packed {
            return;
        }
        let (seq, d) = (self.seq, self.d);
        for (s, row) in sums
            .iter_mut()
            .zip(self.buf[..seq * d].chunks_exact_mut(seq.max(1)))
        {
            row.iter_mut().for_each(|v| *v = (*v).max(-127));
            *s = row.iter().map(|&v| v as i32).sum();
        }
    }

    /// `out[c] = sum_j v_j[c] * probs[j]` for `c < min(d, out.len())`, `j < min(seq, probs.len())`, exact in
    /// `i32` (as [`reference::gemv_u8_i8_i32`] on V transposed). `sums` are [`Self::prepare_sums`]'s; `probs` may
    /// be overwritten.
    pub fn attend(&self, probs: &mut [u8], sums: &[i32], out: &mut [i32]) {
        let (seq, d) = (self.seq, self.d);
        let n = seq.min(probs.len());
        let m = d.min(out.len());
        let out = &mut out[..m];
        #[cfg(target_arch = "x86_64")]
        if self.packed {
            // SAFETY: `packed` means AVX-512 F and VNNI are available; `buf` holds `values_len(seq, d)` values in
            // the packed layout, `probs[..n]` at most `seq` values, `out` at most `d`.
            return unsafe { super::x86::attend_vnni(self.buf, seq, d, &probs[..n], out) };
        }
        let vt = &self.buf[..seq * d];
        if n < seq || sums.len() < m {
            // Tokens without a probability count as 0: the reference on the rows' first `n` values.
            return reference_attend(vt, seq, &probs[..n], out);
        }
        // P.V with the int8 kernel: p - 128 (the top bit flipped), plus 128 times V's row sums.
        let probs = &mut probs[..seq];
        probs.iter_mut().for_each(|p| *p ^= 0x80);
        super::gemv_u8_i8_i32_offset(vt, seq, bytemuck::cast_slice(probs), &sums[..m], out);
    }

    /// [`Self::attend`] for `queries` probability rows at once: row `i` is `probs[i * seq..][..seq]`, its context
    /// goes to `out[i * stride..]` (at most `min(d, stride)` values). On AArch64 the products run in tiles of
    /// four queries by four channels.
    pub fn attend_many(
        &self,
        probs: &mut [u8],
        queries: usize,
        sums: &[i32],
        out: &mut [i32],
        stride: usize,
    ) {
        let (seq, d) = (self.seq, self.d);
        let whole = !self.packed
            && sums.len() >= d
            && stride >= d
            && queries.checked_mul(seq).is_some_and(|n| probs.len() >= n)
            && queries
                .checked_sub(1)
                .and_then(|q| q.checked_mul(stride)?.checked_add(d))
                .is_some_and(|n| out.len() >= n);
        if !whole {
            for (p, o) in probs
                .chunks_mut(seq.max(1))
                .zip(out.chunks_mut(stride.max(1)))
                .take(queries)
            {
                self.attend(p, sums, o);
            }
            return;
        }
        // P.V with the int8 kernel: p - 128 (the top bit flipped), plus 128 times V's row sums.
        let probs = &mut probs[..queries * seq];
        probs.iter_mut().for_each(|p| *p ^= 0x80);
        super::gemm_u8_i8_i32_offset(
            &self.buf[..seq * d],
            seq,
            d,
            bytemuck::cast_slice(probs),
            queries,
            &sums[..d],
            out,
            stride,
        );
    }
}

/// `out[c] = sum_{j < probs.len()} vt[c][j] probs[j]` on the transposed layout (short `probs`).
fn reference_attend(vt: &[i8], seq: usize, probs: &[u8], out: &mut [i32]) {
    for (o, row) in out.iter_mut().zip(vt.chunks_exact(seq.max(1))) {
        let n = probs.len().min(seq);
        let mut one = [0i32];
        reference::gemv_u8_i8_i32(&row[..n], n, &probs[..n], &mut one);
        *o = one[0];
    }
}
