//! The TLS listener of `secapi/`: WeChat Pay serves refunds only to a client presenting
//! the merchant's API certificate, so the handshake itself demands a client certificate
//! issued by the configured CA; a client without one never reaches a handler.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{Listener, WechatV2Sandbox, WechatV2Settings};

/// The rustls configuration: the server certificate, and client certificates required
/// and verified against `client_ca_path`.
pub fn server_config(settings: &WechatV2Settings) -> anyhow::Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(&settings.server_cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("server certificate {}", settings.server_cert_path))?;
    let key = PrivateKeyDer::from_pem_file(&settings.server_key_path)
        .with_context(|| format!("server key {}", settings.server_key_path))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&settings.client_ca_path)
        .with_context(|| format!("client CA {}", settings.client_ca_path))?
    {
        roots.add(ca?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?)
}

/// Binds `host:tls_port` (0: a free port) and returns the server with its port. Every v2
/// path is served here too, as `api.mch.weixin.qq.com` serves them all over TLS.
pub fn serve(
    host: &str,
    settings: &WechatV2Settings,
    sandbox: web::Data<WechatV2Sandbox>,
) -> anyhow::Result<(actix_web::dev::Server, u16)> {
    let config = server_config(settings)?;
    let listener = TcpListener::bind((host, settings.tls_port))
        .with_context(|| format!("binding the v2 TLS listener {host}:{}", settings.tls_port))?;
    let port = listener.local_addr()?.port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(sandbox.clone())
            .configure(super::routes(Listener::MutualTls))
    })
    .workers(1)
    .disable_signals()
    .listen_rustls_0_23(listener, config)?
    .run();
    Ok((server, port))
}
