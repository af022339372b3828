//! A throwaway certificate authority and a server certificate it signed, as PEM files.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// The PEM files of one CA and of the server certificate it signed.
pub struct Pki {
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate, valid for [`SERVER_NAMES`].
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
}

impl Pki {
    /// Makes a CA called `name` and a server certificate under `dir`.
    pub fn generate(dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, name);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut server_params = CertificateParams::new(SERVER_NAMES.map(str::to_owned).to_vec())?;
        server_params.distinguished_name.push(DnType::CommonName, "localhost");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server = server_params.signed_by(&server_key, &ca)?;

        let pki = Self { ca: dir.join("ca.crt"), cert: dir.join("server.crt"), key: dir.join("server.key") };
        std::fs::write(&pki.ca, ca.pem())?;
        std::fs::write(&pki.cert, server.pem())?;
        std::fs::write(&pki.key, server_key.serialize_pem())?;
        Ok(pki)
    }
}
