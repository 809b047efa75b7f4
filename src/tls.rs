//! TLS settings (issue 15), with no I/O on the network: the server's certificate and key
//! (PEM files, or a throwaway CA and a certificate made at start for `--tls-self-signed`),
//! and what the clients trust (the system's roots, or one `--ca-file`). rustls with ring.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

/// ring, not aws-lc-rs: no cmake to build, a smaller binary. rustls 0.23.48 deprecates it for
/// having no post-quantum key exchange; nothing sgp sends is secret under its threat model
/// (SECURITY.md: the board and every relayed message are public, and who sees a party's
/// packets already knows its posts), so TLS here is for secure contexts and integrity.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration for a chain (leaf first) and its key; fails if they do not match.
fn server_config(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => "the key in --tls-key is not the key of the certificate in --tls-cert".to_string(),
            e => format!("the certificate or key is not usable: {e}"),
        })?;
    // HTTP/1.1 only: the WebSocket upgrade is an HTTP/1.1 request.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// `--tls-cert FILE --tls-key FILE`: a PEM chain (leaf first) and its PEM private key.
pub fn load(cert_file: &str, key_file: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {cert_file}: {}", pem_error(e)))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {cert_file}: no certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)"));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| format!("--tls-key {key_file}: {}", pem_error(e)))?;
    server_config(chain, key)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => io.to_string(),
        E::NoItemsFound => "no PEM private key in it (expected -----BEGIN PRIVATE KEY----- or similar)".into(),
        e => format!("not valid PEM ({e})"),
    }
}

/// What `--tls-self-signed` made: the server's configuration, and the CA's certificate (PEM)
/// that a client may trust, with the SHA-256 fingerprints to compare.
pub struct SelfSigned {
    pub config: Arc<rustls::ServerConfig>,
    pub ca_pem: String,
    pub ca_sha256: String,
    pub leaf_sha256: String,
}

/// A CA made for this run only, and a certificate it signs for `names` (DNS names and IP
/// addresses). The CA's key is dropped once it has signed: nothing else can be issued under
/// it, and a client that trusts it trusts this server's certificate alone.
pub fn self_signed(names: &[String]) -> Result<SelfSigned, String> {
    let err = |e: rcgen::Error| format!("--tls-self-signed: {e}");
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    ca.distinguished_name.push(rcgen::DnType::CommonName, "sgp serve --tls-self-signed (one run)");
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let mut leaf = rcgen::CertificateParams::new(names.to_vec()).map_err(err)?;
    leaf.distinguished_name.push(rcgen::DnType::CommonName, names.first().map_or("sgp", |n| n.as_str()));
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;
    drop(ca_key);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = server_config(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)?;
    Ok(SelfSigned { config, ca_pem: ca_cert.pem(), ca_sha256: fingerprint(ca_cert.der()), leaf_sha256: fingerprint(leaf_cert.der()) })
}

/// SHA-256 of a certificate, as browsers show it: `AB:CD:…`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The CA file the clients trust instead of the system's roots (`--ca-file`), set once at start.
static CA_FILE: OnceLock<String> = OnceLock::new();
static CLIENT: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();

/// Makes the clients trust the CA certificates in `path` (PEM), and only those; checked now.
pub fn set_ca_file(path: &str) -> Result<(), String> {
    read_roots(path)?;
    let _ = CA_FILE.set(path.to_string());
    Ok(())
}

/// The `--ca-file` given, for the clients this process starts (`sgp bench key`'s pairs).
pub fn ca_file() -> Option<&'static str> {
    CA_FILE.get().map(String::as_str)
}

fn read_roots(path: &str) -> Result<rustls::RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--ca-file {path}: {}", pem_error(e)))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("--ca-file {path}: no usable CA certificate in it (expected PEM, -----BEGIN CERTIFICATE-----)"));
    }
    Ok(roots)
}

/// The clients' TLS configuration: `--ca-file`'s CAs, or else the system's roots.
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    CLIENT
        .get_or_init(|| {
            let roots = match CA_FILE.get() {
                Some(path) => read_roots(path)?,
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    let mut roots = rustls::RootCertStore::empty();
                    roots.add_parsable_certificates(found.certs);
                    if roots.is_empty() {
                        return Err("TLS: no trusted CA certificates on this system; give one with --ca-file".to_string());
                    }
                    roots
                }
            };
            let cfg = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(cfg))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_chain_is_trusted_by_its_ca_alone() {
        let s = self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(s.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(s.ca_sha256.len(), 32 * 3 - 1);
        assert_ne!(s.ca_sha256, s.leaf_sha256);
        // Another run's CA is another CA.
        assert_ne!(self_signed(&["localhost".into()]).unwrap().ca_sha256, s.ca_sha256);
    }

    #[test]
    fn files_with_clear_errors() {
        let dir = std::env::temp_dir().join(format!("sgp-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
        let missing = load(&p("none.pem"), &p("none.key")).unwrap_err();
        assert!(missing.starts_with("--tls-cert") && missing.contains("none.pem"), "{missing}");
        std::fs::write(p("garbage.pem"), "hello\n").unwrap();
        let e = load(&p("garbage.pem"), &p("garbage.pem")).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        assert!(set_ca_file(&p("garbage.pem")).unwrap_err().contains("--ca-file"));
        // A certificate with another certificate's key.
        let (a, b) = (key_and_cert(), key_and_cert());
        std::fs::write(p("a.pem"), &a.0).unwrap();
        std::fs::write(p("b.key"), &b.1).unwrap();
        std::fs::write(p("a.key"), &a.1).unwrap();
        let e = load(&p("a.pem"), &p("b.key")).unwrap_err();
        assert!(e.contains("is not the key of the certificate"), "{e}");
        assert!(load(&p("a.pem"), &p("a.key")).is_ok());
        // A certificate given as the key.
        let e = load(&p("a.pem"), &p("a.pem")).unwrap_err();
        assert!(e.starts_with("--tls-key") && e.contains("no PEM private key"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn key_and_cert() -> (String, String) {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&k).unwrap();
        (c.pem(), k.serialize_pem())
    }
}
