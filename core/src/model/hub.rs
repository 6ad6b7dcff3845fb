//! Resolving a model argument: a local directory, or a Hugging Face repo id found offline in
//! the local hub cache (`models--org--name/snapshots/<rev>/`). Nothing is downloaded.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// The hub cache folders to search, in the order Hugging Face's own libraries use:
/// `HF_HUB_CACHE`, then `HF_HOME/hub`, then `~/.cache/huggingface/hub`.
pub fn cache_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        dirs.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        dirs.push(PathBuf::from(p).join("hub"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cache/huggingface/hub"));
    }
    dirs
}

/// Resolves `spec` to a checkpoint directory holding `config.json`: a directory path, or a
/// repo id (`org/name`, optionally `org/name@revision`) in one of `caches`. The error lists
/// every place looked at.
pub fn resolve_model_dir_in(spec: &str, caches: &[PathBuf]) -> Result<PathBuf> {
    let as_path = Path::new(spec);
    if as_path.is_dir() {
        if !as_path.join("config.json").is_file() {
            bail!(
                "model directory {} has no config.json (a LLaDA checkpoint in the Hugging Face layout is expected)",
                as_path.display()
            );
        }
        return Ok(as_path.to_path_buf());
    }
    let mut looked = vec![format!("{} (not a directory)", as_path.display())];
    let (repo, revision) = match spec.split_once('@') {
        Some((r, rev)) => (r, Some(rev)),
        None => (spec, None),
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() == 2 && parts.iter().all(|p| !p.is_empty()) {
        let folder = format!("models--{}--{}", parts[0], parts[1]);
        for cache in caches {
            let repo_dir = cache.join(&folder);
            looked.push(repo_dir.display().to_string());
            if let Some(snap) = find_snapshot(&repo_dir, revision) {
                if snap.join("config.json").is_file() {
                    return Ok(snap);
                }
                looked.push(format!("{} (no config.json)", snap.display()));
            }
        }
    }
    bail!(
        "model `{spec}` not found: it is neither a checkpoint directory nor a repo id in the local Hugging Face cache (nothing is downloaded). Looked in: {}",
        looked.join("; ")
    )
}

/// [`resolve_model_dir_in`] over the standard cache locations of [`cache_dirs`].
pub fn resolve_model_dir(spec: &str) -> Result<PathBuf> {
    resolve_model_dir_in(spec, &cache_dirs())
}

fn find_snapshot(repo_dir: &Path, revision: Option<&str>) -> Option<PathBuf> {
    let snaps = repo_dir.join("snapshots");
    // A revision may be a commit hash or a ref name (`refs/<name>` holds the hash).
    let rev = revision.unwrap_or("main");
    if snaps.join(rev).is_dir() {
        return Some(snaps.join(rev));
    }
    if let Ok(hash) = std::fs::read_to_string(repo_dir.join("refs").join(rev)) {
        let p = snaps.join(hash.trim());
        if p.is_dir() {
            return Some(p);
        }
    }
    if revision.is_some() {
        return None;
    }
    // No `main` ref: take the most recently modified snapshot.
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&snaps)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, e.path())
        })
        .collect();
    entries.sort();
    entries.pop().map(|(_, p)| p)
}
