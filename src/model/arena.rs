//! Carving the caller's scratch arena into typed buffers, safely and without allocation.

/// Rounds `n` bytes up to the 16-byte granule every buffer starts on.
pub(crate) const fn round16(n: usize) -> usize {
    (n + 15) & !15
}

/// Bytes reserved so that an arena at any address can be aligned to 16.
pub(crate) const ALIGN_SLACK: usize = 15;

/// A bump allocator over `&mut [u8]`. Callers check the arena's size against the plan's total first, so `take`
/// never runs out; if it ever did, it hands back an empty slice rather than panicking.
pub(crate) struct Arena<'a> {
    rest: &'a mut [u8],
}

impl<'a> Arena<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        let skip = buf.as_ptr().align_offset(16).min(buf.len());
        Arena {
            rest: &mut buf[skip..],
        }
    }

    fn take(&mut self, bytes: usize) -> &'a mut [u8] {
        let rest = core::mem::take(&mut self.rest);
        let granule = round16(bytes).min(rest.len());
        let (head, tail) = rest.split_at_mut(granule);
        self.rest = tail;
        let usable = bytes.min(head.len());
        &mut head[..usable]
    }

    fn words(&mut self, n: usize) -> &'a mut [u8] {
        let bytes = self.take(n.saturating_mul(4));
        let whole = bytes.len() & !3;
        &mut bytes[..whole]
    }

    pub(crate) fn f32s(&mut self, n: usize) -> &'a mut [f32] {
        bytemuck::cast_slice_mut(self.words(n))
    }

    pub(crate) fn i32s(&mut self, n: usize) -> &'a mut [i32] {
        bytemuck::cast_slice_mut(self.words(n))
    }

    pub(crate) fn u32s(&mut self, n: usize) -> &'a mut [u32] {
        bytemuck::cast_slice_mut(self.words(n))
    }

    pub(crate) fn i16s(&mut self, n: usize) -> &'a mut [i16] {
        let bytes = self.take(n.saturating_mul(2));
        let whole = bytes.len() & !1;
        bytemuck::cast_slice_mut(&mut bytes[..whole])
    }

    pub(crate) fn u8s(&mut self, n: usize) -> &'a mut [u8] {
        self.take(n)
    }

    pub(crate) fn i8s(&mut self, n: usize) -> &'a mut [i8] {
        bytemuck::cast_slice_mut(self.take(n))
    }
}
