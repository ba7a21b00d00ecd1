//! Removing trees (roots, staging directories) without crossing mount
//! points or following symlinks: a mount found inside stops the removal
//! with an error naming it, so a user's bind mount is never emptied.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("{} is a mount point inside {}: not removing across it\nhelp: unmount it (`umount {}`) and try again", path.display(), top.display(), path.display())]
    MountInside { path: PathBuf, top: PathBuf },
    #[error("removing {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TeardownError + '_ {
    move |source| TeardownError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Removes `top` and everything below it on the same filesystem. A missing
/// `top` is not an error.
pub fn remove_tree(top: &Path) -> Result<(), TeardownError> {
    let meta = match std::fs::symlink_metadata(top) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(top)(e)),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(top).map_err(io(top));
    }
    // First make sure no mount is below, then remove: nothing is removed
    // from a tree that has a mount in it.
    check_no_mounts(top, top, meta.dev())?;
    remove_dir(top)
}

/// Checks `top` for mounts, moves it to `aside` (so it disappears under its
/// name at once), then removes it. A tree with a mount in it stays where
/// it was, untouched.
pub fn remove_tree_aside(top: &Path, aside: &Path) -> Result<(), TeardownError> {
    let meta = std::fs::symlink_metadata(top).map_err(io(top))?;
    if meta.is_dir() {
        check_no_mounts(top, top, meta.dev())?;
    }
    std::fs::rename(top, aside).map_err(io(top))?;
    remove_tree(aside)
}

fn check_no_mounts(top: &Path, dir: &Path, dev: u64) -> Result<(), TeardownError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let m = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if m.is_dir() {
            if m.dev() != dev {
                return Err(TeardownError::MountInside {
                    path,
                    top: top.to_owned(),
                });
            }
            check_no_mounts(top, &path, dev)?;
        }
    }
    Ok(())
}

fn remove_dir(dir: &Path) -> Result<(), TeardownError> {
    // A directory without write permission (0555) cannot lose entries.
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::symlink_metadata(dir) {
        let mode = m.permissions().mode();
        if mode & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
        }
    }
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(io(&path))?;
        if ft.is_dir() {
            remove_dir(&path)?;
        } else {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    std::fs::remove_dir(dir).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_a_tree_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("root");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::write(top.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), top.join("a/link")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(top.join("a/b"), std::fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&top).unwrap();
        assert!(!top.exists());
        assert!(
            outside.path().join("keep").exists(),
            "the symlink's target stays"
        );
        remove_tree(&top).unwrap(); // missing is fine
    }
}
