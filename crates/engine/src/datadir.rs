//! The data directory: database, hashing pepper, bootstrap admin token and the lock that keeps
//! two servers (or a server and an offline writer) from sharing it.
//!
//! Secret files are written with mode 0600 through a temporary file and a rename, so a crash
//! never leaves a half-written pepper or token behind. Nothing here logs a secret.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ledger::note::Signer;
use token::{Pepper, secret::PEPPER_LEN};

/// Paths inside a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

/// Holds the data directory's exclusive lock until dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DataDir {
    /// A data directory at `root` (not created yet).
    pub fn new(root: &Path) -> DataDir {
        DataDir { root: root.to_owned() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.root.join("tokentrail.db")
    }

    /// The pepper file (32 random bytes, 0600).
    pub fn pepper(&self) -> PathBuf {
        self.root.join("pepper")
    }

    /// The bootstrap admin token (0600).
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }

    /// The checkpoint signing key (C2SP signer key text, 0600).
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("signing.key")
    }

    /// Reads the signing key, or creates it (a fresh Ed25519 seed and a log name
    /// `tokentrail/<random id>`, which is also the checkpoints' origin) when absent.
    pub fn load_or_create_signer(&self, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<(Signer, bool)> {
        let path = self.signing_key();
        match fs::read_to_string(&path) {
            Ok(text) => {
                let signer = Signer::parse(text.trim()).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("{} is not a signing key: {e}", path.display()))
                })?;
                Ok((signer, false))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                fill(&mut seed);
                let name = format!("tokentrail/{}", token::base62::random_digits(12, fill));
                let signer = Signer::from_seed(&name, &seed).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("cannot create a signing key: {e}"))
                })?;
                write_secret_file(&path, format!("{}\n", signer.to_key_text()).as_bytes())?;
                Ok((signer, true))
            }
            Err(e) => Err(e),
        }
    }

    fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Creates the directory (0700) if it does not exist.
    pub fn create(&self) -> io::Result<()> {
        fs::create_dir_all(&self.root)?;
        set_mode(&self.root, 0o700)
    }

    /// Takes the exclusive lock; fails at once if another process holds it.
    pub fn lock(&self) -> io::Result<DirLock> {
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(self.lock_file())?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by another tokentrail process (is a server running?)", self.root.display()),
            )),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Reads the pepper, or creates it with `fill` when absent. A pepper of the wrong length is
    /// an error, never silently replaced (that would invalidate every token).
    pub fn load_or_create_pepper(&self, fill: &mut dyn FnMut(&mut [u8])) -> io::Result<(Pepper, bool)> {
        let path = self.pepper();
        match File::open(&path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                let arr: [u8; PEPPER_LEN] = bytes.try_into().map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not a {PEPPER_LEN}-byte pepper; restore it from a backup", path.display()),
                    )
                })?;
                Ok((Pepper::from_bytes(arr), false))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut bytes = [0u8; PEPPER_LEN];
                fill(&mut bytes);
                write_secret_file(&path, &bytes)?;
                Ok((Pepper::from_bytes(bytes), true))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the bootstrap admin token file, if present.
    pub fn read_admin_token(&self) -> io::Result<Option<String>> {
        match fs::read_to_string(self.admin_token()) {
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the bootstrap admin token file (0600).
    pub fn write_admin_token(&self, token: &str) -> io::Result<()> {
        write_secret_file(&self.admin_token(), format!("{token}\n").as_bytes())
    }
}

/// Writes `bytes` to `path` with mode 0600 via a temporary file, fsync and rename.
pub fn write_secret_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}
