//! The files the CLI writes: checked before any work is done, written atomically (a temporary file in the output's
//! directory, then a rename), and never left behind as a temporary file, whether the command fails or is
//! interrupted (SIGINT, SIGTERM, SIGHUP; SIGKILL cannot be caught, see docs/hardening.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

use anyhow::{bail, Context, Result};
use tempfile::NamedTempFile;

/// What kind of thing `path` is, for messages about a path that should be a regular file: `"a directory"`,
/// `"a character device"`, `"a symbolic link to /dev/zero, a character device"`, ...; `None` when it is a regular
/// file (or a link to one) or does not exist.
pub fn describe_non_file(path: &Path) -> Option<String> {
    let link = path.symlink_metadata().ok()?;
    let kind = match path.metadata() {
        Ok(m) if m.is_file() => return None,
        Ok(m) => file_type_name(&m.file_type()),
        Err(_) => "missing",
    };
    if link.file_type().is_symlink() {
        let target =
            std::fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string());
        if kind == "missing" {
            return Some(format!("a symbolic link to {target}, which does not exist"));
        }
        return Some(format!("a symbolic link to {target}, {kind}"));
    }
    Some(kind.to_string())
}

fn file_type_name(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a named pipe";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Refuses an output path the rename would misuse: a directory, or something that is not a regular file (a
/// device such as `/dev/null`, a pipe, a link to one), and a directory that does not exist or is not a directory.
/// Checked before converting, so the mistake costs nothing.
pub fn check_output_path(out: &Path) -> Result<()> {
    if out.is_dir() {
        bail!(
            "{} is a directory; give the blob's file name (e.g. {})",
            out.display(),
            out.join("model.blob").display()
        );
    }
    if let Some(kind) = describe_non_file(out).filter(|k| !k.ends_with("which does not exist")) {
        bail!(
            "{} is {kind}, not a regular file; write the blob to a file",
            out.display()
        );
    }
    let dir = parent_dir(out);
    if !dir.exists() {
        bail!(
            "the output directory {} does not exist; create it first (mkdir -p {})",
            dir.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!("the output's parent {} is not a directory", dir.display());
    }
    Ok(())
}

/// Refuses an output that is (or, through links, resolves to) one of `inputs`: writing it would replace a file
/// the command reads. `inputs` are `(path, what it is)`, e.g. `(config.json, "the checkpoint's config.json")`.
/// Only metadata is read (device and inode), so a named pipe among the inputs is not opened here.
pub fn check_not_an_input(out: &Path, inputs: &[(&Path, &str)]) -> Result<()> {
    let Ok(out_meta) = out.metadata() else {
        return Ok(()); // an output that does not exist yet is no input
    };
    for (input, what) in inputs {
        if input
            .metadata()
            .is_ok_and(|m| same_file(&out_meta, &m, out, input))
        {
            bail!(
                "{} is {what}, an input of this command; write the output to another file",
                out.display()
            );
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata, _: &Path, _: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata, a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

fn parent_dir(out: &Path) -> &Path {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Atomic output with cleanup on signals
// ---------------------------------------------------------------------------------------------------------------

/// Temporary files to remove if a signal ends the process.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts (once) a thread that, on SIGINT, SIGTERM or SIGHUP, removes the pending temporary files and then ends
/// the process as the signal's default action would (so the shell sees the usual status, 130 for Ctrl-C).
fn install_signal_cleanup() {
    static ONCE: Once = Once::new();
    #[cfg(unix)]
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        use signal_hook::iterator::Signals;
        // If the handlers cannot be installed, signals keep their default action: the process still ends, only
        // the temporary file may stay behind.
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("signal-cleanup".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    for path in pending().drain(..) {
                        let _ = std::fs::remove_file(path);
                    }
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                    std::process::exit(128 + signal);
                }
            });
        drop(spawned);
    });
    #[cfg(not(unix))]
    ONCE.call_once(|| {});
}

/// An output file being made: the temporary file exists (so the directory is known to be writable) but the output
/// is untouched until [`PendingOutput::commit`]. Dropping it, or a signal, removes the temporary file.
pub struct PendingOutput {
    out: PathBuf,
    /// The temporary file's path, as registered for removal on a signal.
    tmp_path: PathBuf,
    /// `None` only once `commit` has taken it.
    tmp: Option<NamedTempFile>,
}

impl PendingOutput {
    /// Checks `out` ([`check_output_path`]) and creates the temporary file beside it.
    pub fn create(out: &Path) -> Result<Self> {
        check_output_path(out)?;
        install_signal_cleanup();
        let dir = parent_dir(out);
        // Held while creating, so a signal cannot come between the file's creation and its registration.
        let mut guard = pending();
        let tmp = tempfile::Builder::new()
            .prefix(".albert-edge-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| {
                format!(
                    "cannot create a temporary file in {} (is it writable?)",
                    dir.display()
                )
            })?;
        guard.push(tmp.path().to_path_buf());
        Ok(PendingOutput {
            out: out.to_path_buf(),
            tmp_path: tmp.path().to_path_buf(),
            tmp: Some(tmp),
        })
    }

    /// Writes `bytes` and renames the temporary file to the output: the output either keeps its old contents or
    /// holds all of `bytes`. Any failure (a full disk included) names the output and the OS's reason; the
    /// temporary file is then removed.
    pub fn commit(mut self, bytes: &[u8]) -> Result<()> {
        let Some(tmp) = self.tmp.take() else {
            unreachable!("commit consumes the PendingOutput");
        };
        write_and_rename(tmp, &self.out, bytes)
            .with_context(|| format!("cannot write {}", self.out.display()))
    }
}

fn write_and_rename(mut tmp: NamedTempFile, out: &Path, bytes: &[u8]) -> Result<()> {
    check_output_path(out)?;
    tmp.write_all(bytes)?;
    // The temporary file is created 0600; the output is an ordinary readable file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(out).map_err(|e| e.error)?;
    Ok(())
}

impl Drop for PendingOutput {
    fn drop(&mut self) {
        // After a successful rename the path names nothing; after a failure `NamedTempFile`'s own drop (already
        // run, or about to) removes the file.
        pending().retain(|p| *p != self.tmp_path);
    }
}
