//! A TLS listener's files made into a rustls server configuration: the
//! certificate chain and key (`certfile`, `keyfile`) and the CAs client
//! certificates are checked against (`cafile`, `capath`). Every error
//! names the key and the file.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, version};

use crate::config::{Tls, TlsVersion};

pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[_] = match tls.min_version {
        TlsVersion::Tls12 => &[&version::TLS13, &version::TLS12],
        TlsVersion::Tls13 => &[&version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS: {e}"))?;
    let roots = roots(tls)?;
    let builder = if roots.is_empty() {
        builder.with_no_client_auth()
    } else {
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        // Without require_certificate a certificate is asked for and
        // checked, but a client may come without one (as OpenSSL's
        // SSL_VERIFY_PEER in mosquitto).
        let verifier = if tls.require_certificate {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let verifier = verifier
            .build()
            .map_err(|e| format!("cafile/capath: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    let chain = certificates("certfile", &tls.certfile)?;
    let key = read("keyfile", &tls.keyfile)?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| pem_error("keyfile", &tls.keyfile, e, "private key"))?;
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "certfile {} and keyfile {}: {e}",
            tls.certfile.display(),
            tls.keyfile.display()
        )
    })?;
    Ok(Arc::new(config))
}

/// The CA certificates of `cafile` and of every `*.pem` file in `capath`
/// (mosquitto's rule for capath); empty when neither is set.
fn roots(tls: &Tls) -> Result<RootCertStore, String> {
    let mut files = Vec::new();
    if let Some(cafile) = &tls.cafile {
        files.push(("cafile", cafile.clone()));
    }
    if let Some(capath) = &tls.capath {
        let error = |e: std::io::Error| format!("capath {}: {e}", capath.display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir(capath).map_err(error)? {
            let path = entry.map_err(error)?.path();
            if path.extension().is_some_and(|e| e == "pem") {
                found.push(("capath", path));
            }
        }
        if found.is_empty() {
            return Err(format!("capath {}: no *.pem file in it", capath.display()));
        }
        found.sort();
        files.extend(found);
    }
    let mut roots = RootCertStore::empty();
    for (key, path) in files {
        for cert in certificates(key, &path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{key} {}: {e}", path.display()))?;
        }
    }
    Ok(roots)
}

/// Every certificate in PEM file `path`, at least one.
fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(key, path, e, "certificate"))?;
    if certs.is_empty() {
        return Err(pem_error(
            key,
            path,
            pem::Error::NoItemsFound,
            "certificate",
        ));
    }
    Ok(certs)
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key} {}: {e}", path.display()))
}

fn pem_error(key: &str, path: &Path, e: pem::Error, what: &str) -> String {
    match e {
        pem::Error::NoItemsFound => format!("{key} {}: no PEM {what} in it", path.display()),
        e => format!("{key} {}: not a PEM {what}: {e}", path.display()),
    }
}
