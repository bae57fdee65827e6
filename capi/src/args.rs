//! Argument checks: C pointers and lengths to Rust slices, or the status that says why not.

use core::mem::{align_of, size_of};
use core::slice;

use crate::status::albert_edge_status::{self, *};

/// A status or a value.
pub type Checked<T> = Result<T, albert_edge_status>;

/// The memory a buffer covers, for the overlap check: `(start address, bytes)`.
pub type Span = (usize, usize);

/// Bytes of `len` values of `T`, if they fit in `isize` (what `slice::from_raw_parts` requires).
fn byte_len<T>(len: usize) -> Checked<usize> {
    len.checked_mul(size_of::<T>())
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or(ALBERT_EDGE_ERR_BAD_ARGUMENT)
}

fn check<T>(ptr: *const T, len: usize) -> Checked<()> {
    byte_len::<T>(len)?;
    if ptr.is_null() {
        return Err(ALBERT_EDGE_ERR_NULL_POINTER);
    }
    if !(ptr as usize).is_multiple_of(align_of::<T>()) {
        return Err(ALBERT_EDGE_ERR_MISALIGNED);
    }
    Ok(())
}

/// `len` values at `ptr` as a slice. NULL with length 0 is an empty slice; NULL otherwise is
/// `ALBERT_EDGE_ERR_NULL_POINTER`; a pointer misaligned for `T` is `ALBERT_EDGE_ERR_MISALIGNED`.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` initialised values of `T` that nothing writes to during `'a`.
pub unsafe fn input<'a, T>(ptr: *const T, len: usize) -> Checked<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check(ptr, len)?;
    // SAFETY: non-NULL, aligned, at most isize::MAX bytes (checked); valid and unaliased (the caller's contract).
    Ok(unsafe { slice::from_raw_parts(ptr, len) })
}

/// [`input`], writable.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` values of `T` that nothing else reads or writes during `'a` (the
/// functions check the buffers they take against each other with [`disjoint`]).
pub unsafe fn output<'a, T>(ptr: *mut T, len: usize) -> Checked<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    check(ptr, len)?;
    // SAFETY: as for `input`; the caller guarantees exclusive access.
    Ok(unsafe { slice::from_raw_parts_mut(ptr, len) })
}

/// The span of `len` values of `T` at `ptr` (empty for NULL or length 0).
pub fn span<T>(ptr: *const T, len: usize) -> Span {
    if ptr.is_null() {
        return (0, 0);
    }
    (ptr as usize, len.saturating_mul(size_of::<T>()))
}

/// `ALBERT_EDGE_ERR_BAD_ARGUMENT` if two of `spans` overlap: a buffer the library writes must not alias another
/// argument.
pub fn disjoint(spans: &[Span]) -> Checked<()> {
    for (i, &(a, an)) in spans.iter().enumerate() {
        for &(b, bn) in &spans[i + 1..] {
            if an > 0 && bn > 0 && a < b.saturating_add(bn) && b < a.saturating_add(an) {
                return Err(ALBERT_EDGE_ERR_BAD_ARGUMENT);
            }
        }
    }
    Ok(())
}

/// Writes `value` through an out-pointer, `ALBERT_EDGE_ERR_NULL_POINTER` if it is NULL.
///
/// # Safety
/// A non-NULL `ptr` must be valid for writing a `T`.
pub unsafe fn put<T>(ptr: *mut T, value: T) -> Checked<()> {
    if ptr.is_null() {
        return Err(ALBERT_EDGE_ERR_NULL_POINTER);
    }
    if !(ptr as usize).is_multiple_of(align_of::<T>()) {
        return Err(ALBERT_EDGE_ERR_MISALIGNED);
    }
    // SAFETY: non-NULL and aligned; valid for writes (the caller's contract).
    unsafe { ptr.write(value) };
    Ok(())
}

/// The status of a result.
pub fn status(r: Checked<()>) -> albert_edge_status {
    match r {
        Ok(()) => ALBERT_EDGE_OK,
        Err(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_is_empty_only_with_length_zero() {
        assert_eq!(unsafe { input::<u32>(core::ptr::null(), 0) }, Ok(&[][..]));
        assert_eq!(
            unsafe { input::<u32>(core::ptr::null(), 1) },
            Err(ALBERT_EDGE_ERR_NULL_POINTER)
        );
        let words = [0u32; 2];
        let odd = (words.as_ptr() as *const u8).wrapping_add(1) as *const u32;
        assert_eq!(unsafe { input(odd, 1) }, Err(ALBERT_EDGE_ERR_MISALIGNED));
        assert_eq!(
            unsafe { input(words.as_ptr(), usize::MAX / 2) },
            Err(ALBERT_EDGE_ERR_BAD_ARGUMENT)
        );
    }

    #[test]
    fn overlapping_spans_are_refused() {
        assert_eq!(disjoint(&[(100, 10), (110, 10), (0, 0), (105, 0)]), Ok(()));
        assert_eq!(
            disjoint(&[(100, 10), (200, 1), (109, 1)]),
            Err(ALBERT_EDGE_ERR_BAD_ARGUMENT)
        );
    }
}
