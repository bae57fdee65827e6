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

    /// `n` values of `T` (fewer only if the arena ran out), starting on a 16-byte boundary.
    pub(crate) fn slice<T: bytemuck::Pod>(&mut self, n: usize) -> &'a mut [T] {
        let size = core::mem::size_of::<T>().max(1);
        let bytes = self.take(n.saturating_mul(size));
        let whole = bytes.len() / size * size;
        bytemuck::cast_slice_mut(&mut bytes[..whole])
    }
}
