//! A GET whose answer is read as JSON text, for the one answer bollard's models
//! cannot carry (`GET /tasks`: its `Task` has no `NetworksAttachments`, where a
//! task's addresses are). It goes through the crates bollard is built on, with
//! bollard's settings: hyperlocal for `unix://`, hyper-util's HTTP connector for
//! `tcp://`/`http://`, and rustls with the endpoint's CA and client certificate
//! for TLS (`DOCKER_TLS_VERIFY` with `tcp://`, or `https://`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::context;

/// Largest answer read: a task list of thousands of tasks fits.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A hyper client for one Engine endpoint.
pub(super) enum Transport {
    Unix {
        client: Client<UnixConnector, Empty<Bytes>>,
        socket: String,
    },
    Http {
        client: Client<HttpConnector, Empty<Bytes>>,
        authority: String,
    },
    Https {
        client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
        authority: String,
    },
}

impl Transport {
    /// A client for `endpoint`, chosen as `client::open` chooses bollard's.
    pub(super) fn new(endpoint: &context::Endpoint) -> Result<Transport, String> {
        let host = endpoint.host.as_str();
        // Like bollard's: no idle connections kept, so a restarted Engine is
        // never met on a stale one.
        let mut builder = Client::builder(TokioExecutor::new());
        builder.pool_max_idle_per_host(0);
        if let Some(socket) = host.strip_prefix("unix://") {
            return Ok(Transport::Unix {
                client: builder.build(UnixConnector),
                socket: socket.to_owned(),
            });
        }
        let authority = ["tcp://", "http://", "https://"]
            .iter()
            .find_map(|scheme| host.strip_prefix(scheme))
            .ok_or_else(|| format!("unsupported Docker Engine address '{host}'"))?
            .trim_end_matches('/')
            .to_owned();
        match &endpoint.tls_dir {
            Some(dir) => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                let https = HttpsConnector::from((http, tls_config(dir)?));
                Ok(Transport::Https {
                    client: builder.build(https),
                    authority,
                })
            }
            None => Ok(Transport::Http {
                client: builder.build(HttpConnector::new()),
                authority,
            }),
        }
    }

    /// GET `path_and_query` (`/v1.41/tasks?…`) and return the body of a
    /// successful answer; any other answer is an error with the Engine's message.
    pub(super) async fn get(
        &self,
        path_and_query: &str,
        user_agent: &'static str,
        timeout: Duration,
    ) -> Result<Bytes, String> {
        let uri: hyper::Uri = match self {
            Transport::Unix { socket, .. } => hyperlocal::Uri::new(socket, path_and_query).into(),
            Transport::Http { authority, .. } => format!("http://{authority}{path_and_query}")
                .parse()
                .map_err(|e| format!("bad request address: {e}"))?,
            Transport::Https { authority, .. } => format!("https://{authority}{path_and_query}")
                .parse()
                .map_err(|e| format!("bad request address: {e}"))?,
        };
        let request = http::Request::get(uri)
            .header(http::header::USER_AGENT, user_agent)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = match self {
                Transport::Unix { client, .. } => client.request(request).await,
                Transport::Http { client, .. } => client.request(request).await,
                Transport::Https { client, .. } => client.request(request).await,
            }
            .map_err(|e| describe(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!(
                    "the Engine answered {}: {}",
                    status.as_u16(),
                    message_of(&body)
                ));
            }
            Ok(body)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {} s", timeout.as_secs()))?
    }
}

/// The Engine's `{"message": …}`, else the body as text.
fn message_of(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    serde_json::from_slice::<Message>(body)
        .map(|m| m.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_owned())
}

/// A client error with its causes (hyper's own text is only "client error (Connect)").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// rustls settings as bollard makes them: the system's roots and `ca.pem`, and
/// `cert.pem`/`key.pem` as the client certificate when both are there.
fn tls_config(dir: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    // The system's roots are a convenience (an Engine behind a public CA); one
    // that cannot be read leaves `ca.pem`, which is what the Engine is signed by.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let ca = dir.join("ca.pem");
    let ca_certs = CertificateDer::pem_file_iter(&ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
    roots.add_parsable_certificates(ca_certs);
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let client_certs = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>());
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem"));
    let config = match (client_certs, key) {
        (Ok(certs), Ok(key)) if !certs.is_empty() => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("unusable client certificate in {}: {e}", dir.display()))?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_message_is_read_from_an_error_body() {
        assert_eq!(
            message_of(br#"{"message":"This node is not a swarm manager."}"#),
            "This node is not a swarm manager."
        );
        assert_eq!(message_of(b"  plain text\n"), "plain text");
    }

    #[test]
    fn addresses_pick_the_connector() {
        let endpoint = |host: &str| context::Endpoint {
            host: host.to_owned(),
            tls_dir: None,
            source: "test".to_owned(),
        };
        assert!(matches!(
            Transport::new(&endpoint("unix:///var/run/docker.sock")),
            Ok(Transport::Unix { .. })
        ));
        assert!(matches!(
            Transport::new(&endpoint("tcp://127.0.0.1:2375/")),
            Ok(Transport::Http { authority, .. }) if authority == "127.0.0.1:2375"
        ));
        assert!(Transport::new(&endpoint("ssh://me@host")).is_err());
        let mut tls = endpoint("https://127.0.0.1:2376");
        tls.tls_dir = Some(std::env::temp_dir().join("wool-docker-no-such-tls-dir"));
        let e = Transport::new(&tls).err().unwrap_or_default();
        assert!(e.contains("ca.pem"), "{e}");
    }
}
