//! `pytorch_model.bin` as `torch.save` writes it (torch >= 1.6): a zip archive of uncompressed entries,
//! `<archive>/data.pkl` (the state_dict, read by [`crate::torch_pickle`]), `<archive>/byteorder` and one entry
//! `<archive>/data/<key>` per storage.
//!
//! Every tensor's view (storage offset, shape, strides) is checked against the size of its storage entry, in
//! checked arithmetic, before any of its data is read or any buffer sized by it is allocated; entries are read
//! only after their size is checked against the file's. A view may be strided (a transpose, a slice of a shared
//! storage): it is gathered row-major. F32, F16 and BF16 storages are read; F16 and BF16 widen exactly.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use anyhow::{anyhow, bail, Result};
use zip::{CompressionMethod, ZipArchive};

use crate::console::escape_control;
use crate::torch_pickle::{read_state_dict, StorageType, TensorRecord};

/// An opened torch checkpoint: the archive and the state_dict's tensors (not yet checked against it).
pub struct TorchArchive<R> {
    zip: ZipArchive<R>,
    len: u64,
    /// `<archive>/`.
    prefix: String,
    tensors: BTreeMap<String, TensorRecord>,
}

impl<R: Read + Seek> TorchArchive<R> {
    /// Opens the archive and runs its `data.pkl`. Errors say what is not a `torch.save` checkpoint.
    pub fn new(mut reader: R) -> Result<Self> {
        let len = reader.seek(SeekFrom::End(0))?;
        reader.rewind()?;
        let mut zip = ZipArchive::new(reader)
            .map_err(|e| anyhow!("not a zip archive ({})", escape_control(&e.to_string())))?;
        let pkls: Vec<&str> = zip
            .file_names()
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .take(2)
            .collect();
        let pkl_name = match pkls[..] {
            [name] => name.to_string(),
            [] => bail!("the archive has no `<name>/data.pkl`"),
            _ => bail!("the archive has more than one `<name>/data.pkl`"),
        };
        let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
        if let Some(i) = zip.index_for_name(&format!("{prefix}byteorder")) {
            let order = read_entry(&mut zip, i, len.min(16))?;
            if order != b"little" {
                bail!(
                    "the archive's byteorder is {:?}; albert-edge reads little-endian checkpoints only",
                    String::from_utf8_lossy(&order)
                );
            }
        }
        let i = zip.index_for_name(&pkl_name).expect("listed above");
        let pkl = read_entry(&mut zip, i, len)?;
        let tensors = read_state_dict(&pkl)?.into_iter().collect();
        Ok(TorchArchive {
            zip,
            len,
            prefix,
            tensors,
        })
    }

    /// The state_dict's tensors by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorRecord> {
        &self.tensors
    }

    /// Reads tensor `name` (an F32, F16 or BF16 storage) as row-major `f32` with its shape. Errors describe the
    /// problem without naming the tensor (the caller does).
    pub fn read_f32(&mut self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| anyhow!("no such tensor"))?
            .clone();
        let decode: fn(&[u8]) -> f32 = match t.dtype {
            StorageType::F32 => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            StorageType::F16 => |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            StorageType::BF16 => |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            ref other => bail!("dtype {other} is not read"),
        };
        let entry = format!("{}data/{}", self.prefix, t.storage_key);
        let i = self.zip.index_for_name(&entry).ok_or_else(|| {
            anyhow!(
                "its storage `{}` is missing from the archive",
                escape_control(&entry)
            )
        })?;
        let size = entry_size(&mut self.zip, i, self.len)?;
        let numel = check_view(&t, size)?;
        let shape: Vec<usize> = t
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()?;
        let storage = read_entry(&mut self.zip, i, self.len)?;
        Ok((shape, gather(&t, numel, &storage, decode)))
    }
}

/// Elements in a view that lies inside a storage of `storage_bytes` bytes; an error if it does not.
fn check_view(t: &TensorRecord, storage_bytes: u64) -> Result<u64> {
    let el = t.dtype.size() as u64;
    let key = &t.storage_key;
    if el == 0 || !storage_bytes.is_multiple_of(el) {
        bail!("its storage `{key}` holds {storage_bytes} bytes, not a whole number of {el}-byte elements");
    }
    let elems = storage_bytes / el;
    if t.storage_numel != elems {
        bail!(
            "its storage `{key}` declares {} elements but holds {elems} (corrupt or crafted file?)",
            t.storage_numel
        );
    }
    let too_large = || {
        anyhow!(
            "its view (shape {:?}, strides {:?}) overflows 64-bit arithmetic (crafted file?)",
            t.shape,
            t.strides
        )
    };
    let numel = t
        .shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(too_large)?;
    if numel == 0 {
        if t.offset > elems {
            bail!(
                "its storage offset {} is past the end of storage `{key}` ({elems} elements)",
                t.offset
            );
        }
        return Ok(0);
    }
    let last = t
        .shape
        .iter()
        .zip(&t.strides)
        .try_fold(t.offset, |at, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| at.checked_add(x))
        })
        .ok_or_else(too_large)?;
    if last >= elems {
        bail!(
            "its view (shape {:?}, strides {:?}, offset {}) reaches element {last} of storage `{key}`, which holds {elems} (corrupt or crafted file?)",
            t.shape,
            t.strides,
            t.offset
        );
    }
    if numel > elems {
        bail!(
            "its view of shape {:?} has {numel} elements, more than the {elems} of its storage (an expanded view?)",
            t.shape
        );
    }
    Ok(numel)
}

/// The view's elements in row-major order, decoded to `f32`. [`check_view`] has bounded every index.
fn gather(t: &TensorRecord, numel: u64, storage: &[u8], decode: fn(&[u8]) -> f32) -> Vec<f32> {
    let el = t.dtype.size();
    let at = |i: u64| decode(&storage[i as usize * el..]);
    let mut values = Vec::with_capacity(numel as usize);
    if numel == 0 {
        return values;
    }
    let mut contiguous = 1u64;
    let is_contiguous = t.shape.iter().zip(&t.strides).rev().all(|(&d, &s)| {
        let ok = d == 1 || s == contiguous;
        contiguous *= d;
        ok
    });
    if is_contiguous {
        values.extend((t.offset..t.offset + numel).map(at));
        return values;
    }
    // An odometer over the shape, last dimension fastest.
    let rank = t.shape.len();
    let mut index = vec![0u64; rank];
    let mut pos = t.offset;
    for _ in 0..numel {
        values.push(at(pos));
        for d in (0..rank).rev() {
            // Wrapping: stepping past the end of a dimension may overshoot before the carry takes it back.
            index[d] += 1;
            pos = pos.wrapping_add(t.strides[d]);
            if index[d] < t.shape[d] {
                break;
            }
            pos = pos.wrapping_sub(t.strides[d].wrapping_mul(t.shape[d]));
            index[d] = 0;
        }
    }
    values
}

/// Size of entry `i`, checked: stored uncompressed, and no larger than the file.
fn entry_size<R: Read + Seek>(zip: &mut ZipArchive<R>, i: usize, file_len: u64) -> Result<u64> {
    let f = zip
        .by_index_raw(i)
        .map_err(|e| anyhow!("cannot open archive entry {i}: {e}"))?;
    if f.compression() != CompressionMethod::Stored {
        bail!(
            "archive entry `{}` is compressed ({}); torch.save stores entries uncompressed",
            escape_control(f.name()),
            f.compression()
        );
    }
    if f.size() != f.compressed_size() || f.size() > file_len {
        bail!(
            "archive entry `{}` declares {} bytes in a {file_len}-byte file (truncated or crafted?)",
            escape_control(f.name()),
            f.size()
        );
    }
    Ok(f.size())
}

/// Reads entry `i` whole (its CRC-32 checked by the zip reader), refusing one larger than `limit` bytes.
fn read_entry<R: Read + Seek>(zip: &mut ZipArchive<R>, i: usize, limit: u64) -> Result<Vec<u8>> {
    let size = entry_size(zip, i, limit)?;
    let mut f = zip
        .by_index(i)
        .map_err(|e| anyhow!("cannot open archive entry {i}: {e}"))?;
    let mut buf = Vec::with_capacity(size as usize);
    f.read_to_end(&mut buf).map_err(|e| {
        anyhow!(
            "cannot read archive entry `{}`: {}",
            escape_control(f.name()),
            escape_control(&e.to_string())
        )
    })?;
    if buf.len() as u64 != size {
        bail!(
            "archive entry `{}` holds {} bytes, not the {size} it declares (truncated?)",
            escape_control(f.name()),
            buf.len()
        );
    }
    Ok(buf)
}

// ---------------------------------------------------------------------------------------------------------------
// Writing (tests and fuzz seeds)
// ---------------------------------------------------------------------------------------------------------------

/// A torch-style zip archive: `archive/data.pkl` = `pkl`, `archive/byteorder` = `little`, and
/// `archive/data/<key>` per storage, all stored uncompressed. For tests and fuzz seeds.
pub fn write_archive(pkl: &[u8], storages: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let entries = [("archive/data.pkl".to_string(), pkl)]
        .into_iter()
        .chain([("archive/byteorder".to_string(), &b"little"[..])])
        .chain(
            storages
                .iter()
                .map(|(key, bytes)| (format!("archive/data/{key}"), *bytes)),
        );
    for (name, bytes) in entries {
        zip.start_file(name, options)?;
        zip.write_all(bytes)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// A `pytorch_model.bin` holding `tensors` (name, dtype, shape, little-endian data), each contiguous in a
/// storage of its own. For tests and fuzz seeds.
pub fn write_checkpoint(tensors: &[(&str, StorageType, &[u64], &[u8])]) -> Result<Vec<u8>> {
    let keys: Vec<String> = (0..tensors.len()).map(|i| i.to_string()).collect();
    let records: Vec<TensorRecord> = tensors
        .iter()
        .zip(&keys)
        .map(|((_, dtype, shape, data), key)| {
            let mut strides = vec![1u64; shape.len()];
            for d in (1..shape.len()).rev() {
                strides[d - 1] = strides[d] * shape[d];
            }
            TensorRecord {
                dtype: dtype.clone(),
                storage_key: key.clone(),
                storage_numel: (data.len() / dtype.size().max(1)) as u64,
                offset: 0,
                shape: shape.to_vec(),
                strides,
            }
        })
        .collect();
    let named: Vec<(&str, &TensorRecord)> = tensors.iter().map(|t| t.0).zip(&records).collect();
    let pkl = crate::torch_pickle::write_state_dict(&named);
    let storages: Vec<(&str, &[u8])> = keys
        .iter()
        .map(String::as_str)
        .zip(tensors.iter().map(|t| t.3))
        .collect();
    write_archive(&pkl, &storages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn open(bytes: Vec<u8>) -> TorchArchive<Cursor<Vec<u8>>> {
        TorchArchive::new(Cursor::new(bytes)).unwrap()
    }

    #[test]
    fn read_f32_round_trips_written_checkpoints_in_three_dtypes() {
        let v: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
        let f16: Vec<u8> = v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        let f32 = f32_bytes(&v);
        let bytes = write_checkpoint(&[
            ("a", StorageType::F32, &[2, 3], &f32),
            ("b", StorageType::F16, &[6], &f16),
            ("c", StorageType::BF16, &[3, 2], &bf16),
        ])
        .unwrap();
        let mut t = open(bytes);
        assert_eq!(t.read_f32("a").unwrap(), (vec![2, 3], v.clone()));
        assert_eq!(t.read_f32("b").unwrap(), (vec![6], v.clone()));
        assert_eq!(t.read_f32("c").unwrap(), (vec![3, 2], v));
    }

    /// A transposed view of a (2, 3) storage is gathered row-major, as torch's `.contiguous()` would.
    #[test]
    fn read_f32_gathers_a_strided_view_row_major() {
        let v: Vec<f32> = (0..7).map(|i| i as f32).collect();
        let rec = TensorRecord {
            dtype: StorageType::F32,
            storage_key: "0".into(),
            storage_numel: 7,
            offset: 1,
            shape: vec![3, 2],
            strides: vec![1, 3],
        };
        let pkl = crate::torch_pickle::write_state_dict(&[("t", &rec)]);
        let mut t = open(write_archive(&pkl, &[("0", &f32_bytes(&v))]).unwrap());
        assert_eq!(
            t.read_f32("t").unwrap(),
            (vec![3, 2], vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0])
        );
    }

    #[test]
    fn read_f32_refuses_views_outside_their_storage_before_allocating() {
        let v = f32_bytes(&[1.0; 4]);
        /// Shape, strides, offset, the storage's declared elements, and the expected error.
        type Case = (&'static [u64], &'static [u64], u64, u64, &'static str);
        let cases: [Case; 5] = [
            (
                &[1_000_000, 1_000_000],
                &[1_000_000, 1],
                0,
                4,
                "reaches element",
            ),
            (&[2, 2], &[2, 1], 1, 4, "reaches element 4"),
            (&[i64::MAX as u64, 4], &[4, 1], 0, 4, "overflows"),
            (&[1000, 1000], &[0, 0], 0, 4, "more than the 4"),
            (
                &[4],
                &[1],
                0,
                1_000_000_000_000,
                "declares 1000000000000 elements",
            ),
        ];
        for (shape, strides, offset, numel, needle) in cases {
            let rec = TensorRecord {
                dtype: StorageType::F32,
                storage_key: "0".into(),
                storage_numel: numel,
                offset,
                shape: shape.to_vec(),
                strides: strides.to_vec(),
            };
            let pkl = crate::torch_pickle::write_state_dict(&[("t", &rec)]);
            let mut t = open(write_archive(&pkl, &[("0", &v)]).unwrap());
            let err = format!("{:#}", t.read_f32("t").unwrap_err());
            assert!(err.contains(needle), "{shape:?}: {err}");
        }
    }

    /// Names come from the file: a directory or tensor name holding a newline must not split an error message
    /// (found by the `torch_archive` fuzz target).
    #[test]
    fn errors_escape_control_characters_in_names_from_the_file() {
        let rec = TensorRecord {
            dtype: StorageType::F32,
            storage_key: "7".into(),
            storage_numel: 1,
            offset: 0,
            shape: vec![1],
            strides: vec![1],
        };
        let pkl = crate::torch_pickle::write_state_dict(&[("t\nerror: forged", &rec)]);
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("a\nb/data.pkl", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(&pkl).unwrap();
        let mut t = open(zip.finish().unwrap().into_inner());
        let err = format!("{:#}", t.read_f32("t\nerror: forged").unwrap_err());
        assert_eq!(
            err,
            "its storage `a\\nb/data/7` is missing from the archive"
        );
        let twice = crate::torch_pickle::write_state_dict(&[("x\ny", &rec), ("x\ny", &rec)]);
        let err = format!(
            "{:#}",
            TorchArchive::new(Cursor::new(write_archive(&twice, &[]).unwrap()))
                .err()
                .unwrap()
        );
        assert_eq!(err, "data.pkl holds tensor `x\\ny` twice");
    }

    #[test]
    fn new_refuses_archives_that_are_not_torch_checkpoints() {
        let err =
            |bytes: Vec<u8>| format!("{:#}", TorchArchive::new(Cursor::new(bytes)).err().unwrap());
        assert!(err(b"not a zip".to_vec()).contains("not a zip archive"));
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("x.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        assert!(err(zip.finish().unwrap().into_inner()).contains("no `<name>/data.pkl`"));
        let bytes = write_checkpoint(&[("a", StorageType::F32, &[1], &[0; 4])]).unwrap();
        let big = {
            let mut b = bytes.clone();
            let at = b.windows(6).position(|w| w == b"little").unwrap();
            b[at..at + 6].copy_from_slice(b"bigxxx");
            b
        };
        // The byteorder entry's CRC no longer matches: the zip reader refuses it.
        assert!(err(big).contains("byteorder"));
    }
}
