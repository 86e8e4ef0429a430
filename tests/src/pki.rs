//! Per-run PKI for the tests: a throwaway CA made with rcgen, server ("leaf")
//! certificates signed by it, RFC 7858 SPKI pins, and PEM files on disk for
//! tools that want files (dig, kdig, unbound, lanveil's own config).
//!
//! Every [`Pki::new`] is a brand-new CA, unrelated to any other: a "wrong CA"
//! test simply makes a second `Pki` and issues the upstream's certificate
//! from it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, Ia5String, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::util::TempDir;

/// RFC 7858 SPKI pin string `sha256/BASE64` of a DER `SubjectPublicKeyInfo`.
pub fn spki_pin_of(spki_der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, spki_der);
    format!(
        "sha256/{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    )
}

/// A certificate authority that lives for one test (or one run).
pub struct Pki {
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    ca_spki: Vec<u8>,
    dir: TempDir,
    ca_pem_path: PathBuf,
    serial: AtomicU32,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("ca_pem_path", &self.ca_pem_path)
            .finish_non_exhaustive()
    }
}

fn sys_to_offset(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

const DAY: Duration = Duration::from_secs(86_400);

impl Pki {
    /// Creates a new self-signed CA (ECDSA P-256) and writes `ca.pem` into a
    /// temporary directory owned by the returned value.
    ///
    /// # Panics
    /// If rcgen fails (it does not for these fixed parameters).
    pub fn new() -> Pki {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("lanveil test CA {}-{n}", std::process::id()),
        );
        params
            .distinguished_name
            .push(DnType::OrganizationName, "lanveil tests");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = sys_to_offset(now - 2 * DAY);
        params.not_after = sys_to_offset(now + 3650 * DAY);
        let ca_cert = params.self_signed(&ca_key).expect("self-sign CA");
        let dir = TempDir::new("lanveil-pki");
        let ca_pem_path = dir.write("ca.pem", ca_cert.pem());
        let ca_spki = ca_key.public_key_der();
        Pki {
            ca_cert,
            ca_key,
            ca_spki,
            dir,
            ca_pem_path,
            serial: AtomicU32::new(1),
        }
    }

    /// The CA certificate (DER), e.g. for a rustls `RootCertStore`.
    pub fn ca_cert(&self) -> CertificateDer<'static> {
        self.ca_cert.der().clone()
    }

    /// The CA certificate in PEM form.
    pub fn ca_pem(&self) -> String {
        self.ca_cert.pem()
    }

    /// Path of `ca.pem` (lives as long as `self`).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// The directory holding this CA's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SPKI pin of the CA key (`sha256/BASE64`).
    pub fn ca_spki_pin(&self) -> String {
        spki_pin_of(&self.ca_spki)
    }

    /// A rustls root store trusting only this CA.
    pub fn root_store(&self) -> Arc<rustls::RootCertStore> {
        trusting(self.ca_cert())
    }

    /// A server certificate for `names` (DNS SANs) and `ips` (IP SANs),
    /// valid from yesterday for a year, with serverAuth EKU.
    pub fn leaf(&self, names: &[&str], ips: &[IpAddr]) -> Leaf {
        let now = SystemTime::now();
        self.leaf_with_validity(names, ips, now - DAY, now + 365 * DAY)
    }

    /// Like [`Pki::leaf`] but expired: valid from 30 days ago until yesterday.
    pub fn expired_leaf(&self, names: &[&str], ips: &[IpAddr]) -> Leaf {
        let now = SystemTime::now();
        self.leaf_with_validity(names, ips, now - 30 * DAY, now - DAY)
    }

    /// Like [`Pki::leaf`] but not valid yet: from tomorrow for 30 days.
    pub fn not_yet_valid_leaf(&self, names: &[&str], ips: &[IpAddr]) -> Leaf {
        let now = SystemTime::now();
        self.leaf_with_validity(names, ips, now + DAY, now + 30 * DAY)
    }

    /// A server certificate with an explicit validity window.
    ///
    /// # Panics
    /// If a name is not a valid IA5 string or rcgen fails.
    pub fn leaf_with_validity(
        &self,
        names: &[&str],
        ips: &[IpAddr],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Leaf {
        let key = KeyPair::generate().expect("generate leaf key");
        let mut params = CertificateParams::default();
        let cn = names
            .first()
            .map(|s| (*s).to_owned())
            .or_else(|| ips.first().map(ToString::to_string))
            .unwrap_or_else(|| "lanveil test leaf".to_owned());
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = names
            .iter()
            .map(|n| {
                SanType::DnsName(
                    Ia5String::try_from(*n)
                        .unwrap_or_else(|e| panic!("bad DNS name {n:?} for a SAN: {e}")),
                )
            })
            .chain(ips.iter().map(|ip| SanType::IpAddress(*ip)))
            .collect();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(u64::from(self.serial.fetch_add(1, Ordering::Relaxed)).into());
        params.not_before = sys_to_offset(not_before);
        params.not_after = sys_to_offset(not_after);
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign leaf");
        let dir = TempDir::new("lanveil-leaf");
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        let cert_pem_path = dir.write("cert.pem", &cert_pem);
        let key_pem_path = dir.write("key.pem", &key_pem);
        let ca_pem_path = dir.write("ca.pem", self.ca_pem());
        Leaf {
            cert_chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            spki_der: key.public_key_der(),
            ca: self.ca_cert(),
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            ips: ips.to_vec(),
            cert_pem,
            key_pem,
            cert_pem_path,
            key_pem_path,
            ca_pem_path,
            _dir: dir,
        }
    }
}

/// A rustls root store trusting only `ca`.
fn trusting(ca: CertificateDer<'static>) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("rcgen CA is a valid trust anchor");
    Arc::new(roots)
}

/// A server certificate + key issued by a [`Pki`], with its files on disk.
pub struct Leaf {
    /// The chain to present: just the leaf (the CA is the trust anchor).
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8, ECDSA P-256).
    pub key: PrivateKeyDer<'static>,
    spki_der: Vec<u8>,
    ca: CertificateDer<'static>,
    names: Vec<String>,
    ips: Vec<IpAddr>,
    cert_pem: String,
    key_pem: String,
    cert_pem_path: PathBuf,
    key_pem_path: PathBuf,
    ca_pem_path: PathBuf,
    _dir: TempDir,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("names", &self.names)
            .field("ips", &self.ips)
            .field("spki_pin", &self.spki_pin())
            .field("cert_pem_path", &self.cert_pem_path)
            .finish_non_exhaustive()
    }
}

impl Leaf {
    /// RFC 7858 pin: `sha256/` + base64(SHA-256(DER SubjectPublicKeyInfo)).
    pub fn spki_pin(&self) -> String {
        spki_pin_of(&self.spki_der)
    }

    /// DER `SubjectPublicKeyInfo` of the leaf key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The issuing CA's certificate.
    pub fn ca_cert(&self) -> CertificateDer<'static> {
        self.ca.clone()
    }

    /// A rustls root store trusting only the issuing CA.
    pub fn root_store(&self) -> Arc<rustls::RootCertStore> {
        trusting(self.ca_cert())
    }

    /// DNS names in the certificate's SAN.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// IP addresses in the certificate's SAN.
    pub fn ips(&self) -> &[IpAddr] {
        &self.ips
    }

    /// The name a client should verify: the first DNS SAN, else the first IP.
    pub fn server_name(&self) -> String {
        self.names
            .first()
            .cloned()
            .or_else(|| self.ips.first().map(ToString::to_string))
            .unwrap_or_default()
    }

    /// A copy of the private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// Leaf certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Path of the leaf certificate PEM file.
    pub fn cert_pem_path(&self) -> &Path {
        &self.cert_pem_path
    }

    /// Path of the private key PEM file.
    pub fn key_pem_path(&self) -> &Path {
        &self.key_pem_path
    }

    /// Path of the issuing CA's PEM file (a copy next to the leaf's files).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// A TLS 1.3 server configuration presenting this leaf, offering these ALPN protocols (none:
    /// no ALPN).
    ///
    /// # Panics
    /// If rustls refuses the certificate and key (it does not: they are made together here).
    pub fn tls13_server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 supported by the ring provider")
        .with_no_client_auth()
        .with_single_cert(self.cert_chain.clone(), self.key())
        .expect("leaf certificate and key");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}
