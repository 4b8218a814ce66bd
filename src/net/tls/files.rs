//! TLS files made into rustls configurations: a listener's certificate
//! chain and key (`certfile`, `keyfile`) and the CAs client certificates
//! are checked against (`cafile`, `capath`); a bridge's CAs, certificate
//! and key (`bridge_cafile`, ...). Every error names the key and the file.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme, version,
};

use crate::tls::{Client, Server, Version};

pub fn server_config(tls: &Server) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[_] = match tls.min_version {
        Version::Tls12 => &[&version::TLS13, &version::TLS12],
        Version::Tls13 => &[&version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS: {e}"))?;
    let cafile = tls.cafile.as_deref().map(|p| ("cafile", p));
    let capath = tls.capath.as_deref().map(|p| ("capath", p));
    let roots = roots(cafile, capath)?;
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
/// (mosquitto's rule for capath), each with the key that named it; empty
/// when neither is set.
fn roots(
    cafile: Option<(&str, &Path)>,
    capath: Option<(&str, &Path)>,
) -> Result<RootCertStore, String> {
    let mut files = Vec::new();
    if let Some((key, cafile)) = cafile {
        files.push((key, cafile.to_owned()));
    }
    if let Some((key, capath)) = capath {
        let error = |e: std::io::Error| format!("{key} {}: {e}", capath.display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir(capath).map_err(error)? {
            let path = entry.map_err(error)?.path();
            if path.extension().is_some_and(|e| e == "pem") {
                found.push((key, path));
            }
        }
        if found.is_empty() {
            return Err(format!("{key} {}: no *.pem file in it", capath.display()));
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

/// A bridge's client configuration: the remote's certificate checked
/// against `bridge_cafile`/`bridge_capath` (and, unless `bridge_insecure`,
/// its names against the host), the bridge's own certificate for a remote
/// that asks, the ALPN protocol offered.
pub fn client_config(tls: &Client) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[_] = match tls.min_version {
        Some(Version::Tls13) => &[&version::TLS13],
        _ => &[&version::TLS13, &version::TLS12],
    };
    let cafile = tls.cafile.as_deref().map(|p| ("bridge_cafile", p));
    let capath = tls.capath.as_deref().map(|p| ("bridge_capath", p));
    let roots = Arc::new(roots(cafile, capath)?);
    let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| format!("bridge_cafile/bridge_capath: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure {
        Arc::new(AnyName(verifier))
    } else {
        verifier
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&tls.certfile, &tls.keyfile) {
        (Some(certfile), Some(keyfile)) => {
            let chain = certificates("bridge_certfile", certfile)?;
            let key = read("bridge_keyfile", keyfile)?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| pem_error("bridge_keyfile", keyfile, e, "private key"))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "bridge_certfile {} and bridge_keyfile {}: {e}",
                    certfile.display(),
                    keyfile.display()
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    if let Some(alpn) = &tls.alpn {
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    }
    Ok(Arc::new(config))
}

/// `bridge_insecure`: the chain is checked as always, but a certificate
/// that does not name the host is let through (mosquitto's meaning).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
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
