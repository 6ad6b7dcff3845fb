//! Writes that never destroy: a temporary file in the destination folder, then a rename, so a
//! crash or Ctrl-C never leaves a half-written checkpoint, log or result behind; and never a
//! rename over something that is not a regular file.
//!
//! What a destination is decides how it is written ([`Target`]):
//! - a regular file or a new path: temp sibling + rename (the file's permissions are kept);
//! - a symlink: written *through*: the temp file and the rename happen next to the link's final
//!   target, so the link stays a link (a dangling link creates its target);
//! - a character device or FIFO (`/dev/null`, `/dev/stdout`, a named pipe): the bytes are
//!   streamed into it, it is never replaced;
//! - `-`: standard output;
//! - a directory, a block device or a socket: refused with an error naming the path.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// How a write to a destination path is carried out (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A regular file (or a path that does not exist yet), after following symlinks: written
    /// atomically next to it.
    File(PathBuf),
    /// A character device or FIFO: streamed into, never replaced.
    Stream(PathBuf),
    /// `-`: standard output.
    Stdout,
}

/// Symlink hops followed before giving up (the kernel's own limit is 40).
const MAX_LINKS: usize = 40;

/// Decides how `path` can be written, following symlinks; refuses directories, block devices
/// and sockets with an error naming the path and what it is.
pub fn classify(path: &Path) -> Result<Target> {
    if path.as_os_str() == "-" {
        return Ok(Target::Stdout);
    }
    let mut cur = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&cur) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::File(cur)),
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", cur.display())),
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            // A link whose target exists: let the OS resolve the whole chain (this also covers
            // `/dev/stdout` → `/proc/self/fd/1` → `pipe:[…]`, which is not a path).
            if let Ok(m) = std::fs::metadata(&cur) {
                if m.is_file() {
                    let real = std::fs::canonicalize(&cur)
                        .with_context(|| format!("cannot resolve the symlink {}", cur.display()))?;
                    return Ok(Target::File(real));
                }
                return special(path, &cur, &m.file_type());
            }
            // Dangling: follow by hand so the new file is created where the link points.
            let to = std::fs::read_link(&cur)
                .with_context(|| format!("cannot read the symlink {}", cur.display()))?;
            cur = match cur.parent() {
                Some(dir) if to.is_relative() => dir.join(to),
                _ => to,
            };
            continue;
        }
        if ft.is_file() {
            return Ok(Target::File(cur));
        }
        return special(path, &cur, &ft);
    }
    bail!(
        "{}: too many levels of symbolic links; refusing to write",
        path.display()
    )
}

#[cfg(unix)]
fn special(given: &Path, real: &Path, ft: &std::fs::FileType) -> Result<Target> {
    use std::os::unix::fs::FileTypeExt;
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() || ft.is_fifo() {
        return Ok(Target::Stream(real.to_path_buf()));
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    refuse(given, real, what)
}

#[cfg(not(unix))]
fn special(given: &Path, real: &Path, ft: &std::fs::FileType) -> Result<Target> {
    let what = if ft.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    refuse(given, real, what)
}

fn refuse(given: &Path, real: &Path, what: &str) -> Result<Target> {
    let via = if given == real {
        String::new()
    } else {
        format!(" (via {})", real.display())
    };
    bail!(
        "{}{via} is {what}; refusing to write over it (give a file path, or `-` for stdout)",
        given.display()
    )
}

/// Creates `path` by letting `write` fill a temporary file, then moving it into place as
/// [`classify`] decides: renamed over a regular file (or the final target of a symlink),
/// streamed into a device or FIFO, copied to stdout for `-`.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    match classify(path)? {
        Target::File(real) => replace_file(path, &real, write),
        other => {
            let bytes = via_scratch(path, write)?;
            stream(path, &other, &bytes)
        }
    }
}

/// Streams `bytes` into a device, FIFO or stdout (not for [`Target::File`]).
fn stream(given: &Path, target: &Target, bytes: &[u8]) -> Result<()> {
    let res = match target {
        Target::File(_) => unreachable!("regular files are replaced, not streamed"),
        Target::Stream(real) => std::fs::OpenOptions::new()
            .write(true)
            .open(real)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.flush())),
        Target::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
    };
    res.with_context(|| format!("cannot write {}", given.display()))
}

fn replace_file(given: &Path, real: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = real
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover (or planted symlink) at the temp name must not redirect the write.
    let _ = std::fs::remove_file(&tmp);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("cannot write {}", given.display())));
    }
    if let Ok(meta) = std::fs::metadata(real) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, real).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot move {} into place: {e}", given.display())
    })
}

/// Runs `write` on a scratch file in the temp folder and returns what it wrote.
fn via_scratch(given: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<Vec<u8>> {
    let scratch = std::env::temp_dir().join(format!(
        "workbench-{}-{}.tmp",
        std::process::id(),
        SCRATCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&scratch);
    let res = write(&scratch)
        .with_context(|| format!("cannot write {}", given.display()))
        .and_then(|()| {
            std::fs::read(&scratch).with_context(|| format!("cannot read {}", scratch.display()))
        });
    let _ = std::fs::remove_file(&scratch);
    res
}

static SCRATCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    match classify(path)? {
        Target::File(real) => replace_file(path, &real, |tmp| Ok(std::fs::write(tmp, bytes)?)),
        other => stream(path, &other, bytes),
    }
}

/// Whether process `pid` is running: `Some` where `/proc` tells (Linux), `None` where it
/// cannot be known. The one liveness test behind the cleanup of what killed runs leave behind
/// (checkpoint temp folders, `generate`'s partial results).
pub fn pid_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    proc.join("self")
        .exists()
        .then(|| proc.join(pid.to_string()).exists())
}

/// A results file that grows as work finishes and appears atomically at the end: lines are
/// appended (and flushed) to a temporary sibling of the target, `.NAME.PID.partial`, which
/// [`LineSink::finish`] renames into place — also after an interruption, so finished work is
/// kept. Devices, FIFOs and `-` (stdout) receive the lines directly.
///
/// A run killed outright (`kill -9`, the OOM killer) leaves its partial sibling behind. The
/// next sink for the same file finds the ones whose process is gone ([`LineSink::stale`]: say
/// so when starting) and removes them when it moves its own result into place — the moment
/// the old run's results would have been replaced anyway. Until then they are kept, so a
/// person can still rescue them; a partial of a live process, or where liveness cannot be
/// known (no `/proc`), is never touched.
#[derive(Debug)]
pub struct LineSink {
    given: PathBuf,
    kind: SinkKind,
    lines: usize,
    stale: Vec<Stale>,
}

/// A partial results file left by a killed run (see [`LineSink`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// Its path.
    pub path: PathBuf,
    /// The process that wrote it (no longer running).
    pub pid: u32,
    /// Result lines it holds.
    pub lines: usize,
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} holds {} result line(s) of an interrupted run (process {} is gone); it is \
             removed when this run's results replace the file (move it away to keep it)",
            self.path.display(),
            self.lines,
            self.pid
        )
    }
}

/// The `.NAME.PID.partial` siblings of `real` whose process is known to be gone.
fn stale_partials(dir: &Path, name: &str) -> Vec<Stale> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let prefix = format!(".{name}.");
    let mut out: Vec<Stale> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().to_string();
            let pid: u32 = file
                .strip_prefix(&prefix)?
                .strip_suffix(".partial")?
                .parse()
                .ok()?;
            if pid == std::process::id() || pid_alive(pid) != Some(false) {
                return None;
            }
            let path = e.path();
            if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                return None;
            }
            let lines = std::fs::read(&path)
                .map(|b| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count())
                .unwrap_or(0);
            Some(Stale { path, pid, lines })
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[derive(Debug)]
enum SinkKind {
    Partial {
        tmp: PathBuf,
        real: PathBuf,
        file: std::fs::File,
    },
    Stream(Box<dyn WriteDebug>),
}

trait WriteDebug: Write + Send + std::fmt::Debug {}
impl<T: Write + Send + std::fmt::Debug> WriteDebug for T {}

impl LineSink {
    /// Opens the sink for `path` (see [`classify`]; directories and block devices are refused).
    pub fn create(path: &Path) -> Result<LineSink> {
        let mut stale = Vec::new();
        let kind = match classify(path)? {
            Target::File(real) => {
                let dir = real
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf();
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let name = real
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let tmp = dir.join(format!(".{name}.{}.partial", std::process::id()));
                let _ = std::fs::remove_file(&tmp);
                stale = stale_partials(&dir, &name);
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .with_context(|| format!("cannot create {}", tmp.display()))?;
                SinkKind::Partial { tmp, real, file }
            }
            Target::Stream(real) => SinkKind::Stream(Box::new(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&real)
                    .with_context(|| format!("cannot open {} for writing", path.display()))?,
            )),
            Target::Stdout => SinkKind::Stream(Box::new(std::io::stdout())),
        };
        Ok(LineSink {
            given: path.to_path_buf(),
            kind,
            lines: 0,
            stale,
        })
    }

    /// Partial results of killed earlier runs writing the same file, removed by
    /// [`LineSink::finish`] (see [`LineSink`]); each displays as a warning line.
    pub fn stale(&self) -> &[Stale] {
        &self.stale
    }

    /// Appends one line (a newline is added) and flushes it.
    pub fn push(&mut self, line: &str) -> Result<()> {
        let w: &mut dyn Write = match &mut self.kind {
            SinkKind::Partial { file, .. } => file,
            SinkKind::Stream(s) => s,
        };
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"))
            .and_then(|()| w.flush())
            .with_context(|| format!("cannot write {}", self.given.display()))?;
        self.lines += 1;
        Ok(())
    }

    /// Lines written so far.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Moves the file into place (keeping the permissions of a file it replaces) and removes
    /// the [`LineSink::stale`] partials of killed earlier runs; returns the number of lines.
    pub fn finish(self) -> Result<usize> {
        if let SinkKind::Partial { tmp, real, file } = self.kind {
            file.sync_all()
                .with_context(|| format!("cannot write {}", self.given.display()))?;
            drop(file);
            if let Ok(meta) = std::fs::metadata(&real) {
                let _ = std::fs::set_permissions(&tmp, meta.permissions());
            }
            std::fs::rename(&tmp, &real).map_err(|e| {
                anyhow::anyhow!(
                    "cannot move {} into place: {e} (the results are in {})",
                    self.given.display(),
                    tmp.display()
                )
            })?;
            for s in &self.stale {
                let _ = std::fs::remove_file(&s.path);
            }
        }
        Ok(self.lines)
    }
}
