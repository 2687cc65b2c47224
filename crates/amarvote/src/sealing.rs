//! Secrets at rest: guardian keys, decryption grants and pending ballots' nonces.
//!
//! A guardian's secret is sealed with AES-256-GCM under a key that needs both the
//! guardian's passphrase (stretched with Argon2id) and the server key: a stolen database
//! alone, or a leaked passphrase alone, opens nothing. When a guardian consents to decrypt,
//! the API opens the secret once and reseals it under the server key alone (a grant) that
//! the workers can open, one chunk at a time. Every sealed blob is bound to its purpose
//! (the associated data), so a blob cannot be replayed in another role.
//!
//! Rotation: a [`ServerKey`] seals under its current key and opens under the current key or
//! any retired one it was given ([`ServerKey::retiring`]), so a deployment moves to a new key
//! without resealing what is stored; a retired key is dropped once nothing sealed under it is
//! needed (docs/operations.md, "Rotating the server key").

use std::path::Path;

use anyhow::Context;
use hmac::{Hmac, Mac};
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

const VERSION: u8 = 1;
const WITH_PASSPHRASE: u8 = 1;
const SERVER_ONLY: u8 = 2;
const SALT: usize = 16;
const NONCE: usize = 12;
const TAG: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the sealed secret is damaged or was sealed for another purpose")]
    Malformed,
    #[error("wrong passphrase, or the secret was sealed under another server key")]
    WrongKey,
}

/// The server's own sealing key (32 bytes), and the retired keys it still opens with;
/// zeroized when dropped and never printed.
pub struct ServerKey {
    current: Zeroizing<[u8; 32]>,
    retired: Vec<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for ServerKey {
    /// Redacted: how many retired keys, never a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("retired", &self.retired.len())
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    fn new(current: Zeroizing<[u8; 32]>) -> ServerKey {
        ServerKey {
            current,
            retired: Vec::new(),
        }
    }

    /// This key, opening also what `retired` sealed (their own retired keys included, each
    /// once). Refused if a retired key is the current one: a rotation that changed nothing.
    pub fn retiring(mut self, retired: Vec<ServerKey>) -> anyhow::Result<ServerKey> {
        let count = retired.iter().map(|k| 1 + k.retired.len()).sum::<usize>();
        // Sized once, so that no key is left behind in a reallocated buffer.
        let mut keys = Vec::with_capacity(self.retired.len() + count);
        keys.append(&mut self.retired);
        for mut old in retired {
            keys.push(std::mem::take(&mut old.current));
            keys.append(&mut old.retired);
        }
        if keys.contains(&self.current) {
            anyhow::bail!("a retired server key is the current one");
        }
        self.retired = Vec::with_capacity(keys.len());
        for key in keys {
            if !self.retired.contains(&key) {
                self.retired.push(key);
            }
        }
        Ok(self)
    }

    /// The current key first, then the retired ones.
    fn all(&self) -> impl Iterator<Item = &[u8; 32]> {
        std::iter::once(&*self.current).chain(self.retired.iter().map(|k| &**k))
    }

    pub fn from_hex(text: &str) -> anyhow::Result<ServerKey> {
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<_>>()
            .context("the server key must be hex")?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the server key must be 32 bytes (64 hex digits)"))?;
        Ok(ServerKey::new(Zeroizing::new(key)))
    }

    /// The key of a file sealed on a guardian's own machine, where there is no server
    /// secret: the passphrase alone (through Argon2id) protects it.
    pub fn local() -> ServerKey {
        ServerKey::new(Zeroizing::new([0u8; 32]))
    }

    pub fn generate() -> ServerKey {
        let mut key = Zeroizing::new([0u8; 32]);
        openssl::rand::rand_bytes(key.as_mut()).expect("the system random generator works");
        ServerKey::new(key)
    }

    /// The server key of a deployment, refused when weak: it must be 64 hex digits of a
    /// random key, not a placeholder such as all zeros or a short repeated pattern.
    pub fn from_hex_strong(text: &str) -> anyhow::Result<ServerKey> {
        let key = ServerKey::from_hex(text.trim())
            .map_err(|e| anyhow::anyhow!("{e}; make one with: openssl rand -hex 32"))?;
        let distinct: std::collections::HashSet<u8> = key.current.iter().copied().collect();
        // A random 32-byte key has ~30 distinct bytes; fewer than 16 happens with
        // probability far below 2^-100, so this refuses only made-up keys.
        if distinct.len() < 16 {
            anyhow::bail!(
                "the server key is weak ({} distinct bytes): make a random one with: openssl rand -hex 32",
                distinct.len()
            );
        }
        Ok(key)
    }

    /// Reads the key file of a data directory, creating it (mode 0600) on first use. An
    /// existing file that others may read, or that holds a weak key, is refused.
    pub fn load_or_create(path: &Path) -> anyhow::Result<ServerKey> {
        if path.exists() {
            refuse_shared_file(path)?;
            let text = Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            );
            return ServerKey::from_hex_strong(&text)
                .with_context(|| format!("{} holds no usable server key", path.display()));
        }
        let key = ServerKey::generate();
        let hex = Zeroizing::new(crate::domain::hex(key.current.as_ref()));
        write_private(path, hex.as_bytes())?;
        Ok(key)
    }

    /// The current key's derivation: what new seals use.
    fn derive(&self, label: &[u8], material: &[u8]) -> Zeroizing<[u8; 32]> {
        derive(&self.current, label, material)
    }

    /// Opens `sealed` with the key each of the server's keys derives, current first.
    fn open_with_any(
        &self,
        sealed: &[u8],
        label: &[u8],
        material: &[u8],
        purpose: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.all()
            .find_map(|key| open_with_key(sealed, &derive(key, label, material), purpose).ok())
            .ok_or(SealError::WrongKey)
    }
}

fn derive(server: &[u8; 32], label: &[u8], material: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(server).expect("any key length");
    mac.update(label);
    mac.update(material);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// Refuses a token that could be guessed: shorter than 32 characters or made of few.
pub fn check_admin_token(token: &str) -> anyhow::Result<()> {
    let distinct: std::collections::HashSet<char> = token.chars().collect();
    if token.chars().count() < 32 || distinct.len() < 8 {
        anyhow::bail!(
            "the administrator token must be at least 32 characters of a random value; make one with: openssl rand -hex 16"
        );
    }
    Ok(())
}

/// Refuses a secret file that its group or other users may read or write.
pub fn refuse_shared_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{} is readable by other users (mode {:o}): restrict it with chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

/// Creates a directory only its owner may enter (0700), and makes an existing one so.
pub fn private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

/// Creates an empty file readable only by its owner (0600) unless it exists: a database
/// opened on it afterwards (and SQLite's WAL and shared-memory files, which take the
/// database file's mode) is never readable by others, not even for a moment.
pub fn private_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

fn stretch(passphrase: &str, salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let params = argon2::Params::new(19 * 1024, 2, 1, Some(32)).expect("valid Argon2 parameters");
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
        .expect("valid Argon2 output length");
    out
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    openssl::rand::rand_bytes(&mut bytes).expect("the system random generator works");
    bytes
}

fn seal_with_key(
    kind: u8,
    salt: &[u8; SALT],
    key: &[u8; 32],
    purpose: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let nonce: [u8; NONCE] = random();
    let mut tag = [0u8; TAG];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(&nonce),
        purpose.as_bytes(),
        plaintext,
        &mut tag,
    )
    .expect("AES-256-GCM encryption does not fail");
    [&[VERSION, kind][..], salt, &nonce, &ciphertext, &tag].concat()
}

fn open_with_key(
    sealed: &[u8],
    key: &[u8; 32],
    purpose: &str,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let body = &sealed[2 + SALT..];
    let (nonce, rest) = body.split_at(NONCE);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG);
    decrypt_aead(
        Cipher::aes_256_gcm(),
        key,
        Some(nonce),
        purpose.as_bytes(),
        ciphertext,
        tag,
    )
    .map(Zeroizing::new)
    .map_err(|_| SealError::WrongKey)
}

fn header(sealed: &[u8], kind: u8) -> Result<[u8; SALT], SealError> {
    if sealed.len() < 2 + SALT + NONCE + TAG || sealed[0] != VERSION || sealed[1] != kind {
        return Err(SealError::Malformed);
    }
    Ok(sealed[2..2 + SALT].try_into().expect("length checked"))
}

/// Seals under the passphrase and the server key together.
pub fn seal_with_passphrase(
    server: &ServerKey,
    passphrase: &str,
    purpose: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let salt: [u8; SALT] = random();
    let key = server.derive(
        b"amarvote-seal-passphrase-v1",
        stretch(passphrase, &salt).as_ref(),
    );
    seal_with_key(WITH_PASSPHRASE, &salt, &key, purpose, plaintext)
}

pub fn open_with_passphrase(
    server: &ServerKey,
    passphrase: &str,
    purpose: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let salt = header(sealed, WITH_PASSPHRASE)?;
    let stretched = stretch(passphrase, &salt);
    server.open_with_any(
        sealed,
        b"amarvote-seal-passphrase-v1",
        stretched.as_ref(),
        purpose,
    )
}

/// Seals under the server key alone (grants, pending ballots' nonces).
pub fn seal(server: &ServerKey, purpose: &str, plaintext: &[u8]) -> Vec<u8> {
    let salt: [u8; SALT] = random();
    let key = server.derive(b"amarvote-seal-server-v1", &salt);
    seal_with_key(SERVER_ONLY, &salt, &key, purpose, plaintext)
}

pub fn open(
    server: &ServerKey,
    purpose: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let salt = header(sealed, SERVER_ONLY)?;
    server.open_with_any(sealed, b"amarvote-seal-server-v1", &salt, purpose)
}

/// A random passphrase of 20 characters from an unambiguous alphabet (about 100 bits).
pub fn random_passphrase() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes: [u8; 20] = random();
    let phrase = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    bytes.zeroize();
    phrase
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passphrase_seal_needs_both_the_passphrase_and_the_server_key() {
        let server = ServerKey::generate();
        let sealed = seal_with_passphrase(&server, "correct horse", "guardian:e1:g1", b"secret");
        assert_eq!(
            open_with_passphrase(&server, "correct horse", "guardian:e1:g1", &sealed)
                .unwrap()
                .as_slice(),
            b"secret"
        );
        assert_eq!(
            open_with_passphrase(&server, "wrong", "guardian:e1:g1", &sealed),
            Err(SealError::WrongKey)
        );
        assert_eq!(
            open_with_passphrase(
                &ServerKey::generate(),
                "correct horse",
                "guardian:e1:g1",
                &sealed
            ),
            Err(SealError::WrongKey)
        );
        assert_eq!(
            open_with_passphrase(&server, "correct horse", "guardian:e1:g2", &sealed),
            Err(SealError::WrongKey)
        );
    }

    #[test]
    fn server_seal_rejects_tampering_and_the_other_kind() {
        let server = ServerKey::generate();
        let mut sealed = seal(&server, "grant", b"key");
        assert_eq!(open(&server, "grant", &sealed).unwrap().as_slice(), b"key");
        assert_eq!(
            open_with_passphrase(&server, "x", "grant", &sealed),
            Err(SealError::Malformed)
        );
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(open(&server, "grant", &sealed), Err(SealError::WrongKey));
        assert_eq!(
            open(&server, "grant", &sealed[..10]),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn a_rotated_key_opens_what_its_retired_keys_sealed_and_seals_under_the_new_one() {
        let old_hex = crate::domain::hex(&[7u8; 32]);
        let old = || ServerKey::from_hex(&old_hex).unwrap();
        let grant = seal(&old(), "grant", b"share");
        let guardian = seal_with_passphrase(&old(), "pass", "guardian:e1:g1", b"secret");
        let new = ServerKey::generate();
        let new_hex = crate::domain::hex(new.current.as_ref());
        let rotated = new.retiring(vec![old()]).unwrap();
        assert_eq!(
            open(&rotated, "grant", &grant).unwrap().as_slice(),
            b"share"
        );
        let opened = open_with_passphrase(&rotated, "pass", "guardian:e1:g1", &guardian);
        assert_eq!(opened.unwrap().as_slice(), b"secret");
        assert_eq!(
            open_with_passphrase(&rotated, "wrong", "guardian:e1:g1", &guardian),
            Err(SealError::WrongKey),
            "the passphrase is still needed"
        );
        let fresh = seal(&rotated, "grant", b"later");
        assert_eq!(open(&old(), "grant", &fresh), Err(SealError::WrongKey));
        let new_alone = ServerKey::from_hex(&new_hex).unwrap();
        assert_eq!(
            open(&new_alone, "grant", &fresh).unwrap().as_slice(),
            b"later"
        );
        assert_eq!(open(&new_alone, "grant", &grant), Err(SealError::WrongKey));
        assert!(
            old().retiring(vec![old()]).is_err(),
            "a rotation to the same key"
        );
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        let first = ServerKey::load_or_create(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = seal(&first, "p", b"x");
        let again = ServerKey::load_or_create(&path).unwrap();
        assert_eq!(open(&again, "p", &sealed).unwrap().as_slice(), b"x");
    }
}
