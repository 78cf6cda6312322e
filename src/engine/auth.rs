//! Registry credentials, found as the docker CLI finds them: the config
//! directory (`$DOCKER_CONFIG`, else `~/.docker`), its `config.json`'s
//! `credHelpers`, `auths` (`auth`, `username`/`password`, `identitytoken`) and
//! `credsStore`, read by the `docker_credential` crate. Also the registry an
//! image reference names, by Docker's rule.

use std::path::PathBuf;

use bollard::auth::DockerCredentials;
use docker_credential::{CredentialRetrievalError, DockerCredential};

use crate::error::{Error, Result};

/// Docker Hub's name in references and messages.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's key in `config.json` and for credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The registry host (`host[:port]`) that `image` is pulled from: its first
/// path component when that looks like a host (has a `.` or `:`, or is
/// `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => DOCKER_HUB,
    }
}

/// `image` as a repository and a tag or digest: the Engine pulls every tag of
/// a repository given without one, so the CLI's default, `latest`, is made
/// explicit. A digest (`repo@sha256:…`) is kept whole as the repository.
pub fn repository_and_tag(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].rfind(':') {
        Some(i) => (&image[..last + i], Some(&image[last + i + 1..])),
        None => (image, Some("latest")),
    }
}

/// Where the docker CLI keeps its configuration.
fn config_file() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    Some(dir.join("config.json"))
}

/// The credentials configured for `registry` (a host, or [`DOCKER_HUB`]);
/// `None` when there are none (the Engine then asks anonymously, as the CLI
/// does). Blocking: a credential helper is a process run to its end.
pub fn credentials_for(registry: &str) -> Result<Option<DockerCredentials>> {
    let Some(path) = config_file() else {
        return Ok(None);
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::RegistryCredentials {
                registry: registry.to_owned(),
                reason: format!("cannot read {}: {e}", path.display()),
            })
        }
    };
    let key = if registry == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        registry
    };
    let found = docker_credential::get_credential_from_reader(std::io::BufReader::new(file), key);
    read_credential(found, registry, key, &path)
}

/// What the crate found, as bollard's credentials for `registry`.
fn read_credential(
    found: std::result::Result<DockerCredential, CredentialRetrievalError>,
    registry: &str,
    key: &str,
    path: &std::path::Path,
) -> Result<Option<DockerCredentials>> {
    let server = Some(key.to_owned());
    match found {
        Ok(DockerCredential::UsernamePassword(username, password)) => Ok(Some(DockerCredentials {
            username: Some(username),
            password: Some(password),
            serveraddress: server,
            ..Default::default()
        })),
        Ok(DockerCredential::IdentityToken(token)) => Ok(Some(DockerCredentials {
            identitytoken: Some(token),
            serveraddress: server,
            ..Default::default()
        })),
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(None),
        // What every helper says when it has nothing for this registry; the
        // CLI goes on anonymously then.
        Err(CredentialRetrievalError::HelperFailure { stdout, .. })
            if stdout.contains("credentials not found") =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::RegistryCredentials {
            registry: registry.to_owned(),
            reason: format!("{} (from {})", e.to_string().trim_end(), path.display()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(config: &str, key: &str) -> Result<Option<DockerCredentials>> {
        let got = docker_credential::get_credential_from_reader(config.as_bytes(), key);
        read_credential(got, key, key, std::path::Path::new("config.json"))
    }

    #[test]
    fn the_registry_is_the_first_component_when_it_looks_like_a_host() {
        for (image, registry) in [
            ("python:3.11", DOCKER_HUB),
            ("library/python", DOCKER_HUB),
            ("user/repo:tag", DOCKER_HUB),
            ("127.0.0.1:5000/wool/worker:1", "127.0.0.1:5000"),
            ("registry.example/worker", "registry.example"),
            ("localhost/worker", "localhost"),
        ] {
            assert_eq!(registry_of(image), registry, "{image}");
        }
    }

    #[test]
    fn a_reference_without_a_tag_pulls_latest_only() {
        assert_eq!(repository_and_tag("python"), ("python", Some("latest")));
        assert_eq!(
            repository_and_tag("127.0.0.1:5000/w"),
            ("127.0.0.1:5000/w", Some("latest"))
        );
        assert_eq!(
            repository_and_tag("127.0.0.1:5000/w:v1"),
            ("127.0.0.1:5000/w", Some("v1"))
        );
        assert_eq!(repository_and_tag("r/w@sha256:00"), ("r/w@sha256:00", None));
    }

    #[test]
    fn auths_give_a_password_or_a_token() {
        // "u:p" in base64.
        let config = r#"{"auths": {"127.0.0.1:5000": {"auth": "dTpw"},
            "https://index.docker.io/v1/": {"identitytoken": "tok"},
            "plain.example": {"username": "a", "password": "b"}}}"#;
        let basic = found(config, "127.0.0.1:5000").ok().flatten();
        let basic = basic.unwrap_or_else(|| panic!("no credentials"));
        assert_eq!(
            (basic.username.as_deref(), basic.password.as_deref()),
            (Some("u"), Some("p"))
        );
        let token = found(config, DOCKER_HUB_KEY).ok().flatten();
        assert_eq!(token.and_then(|t| t.identitytoken).as_deref(), Some("tok"));
        let plain = found(config, "plain.example").ok().flatten();
        assert_eq!(plain.and_then(|c| c.username).as_deref(), Some("a"));
        assert!(found(config, "other.example").ok().flatten().is_none());
    }

    #[test]
    fn a_missing_helper_is_an_error_naming_the_registry() {
        let config = r#"{"credHelpers": {"r.example": "wool-docker-no-such-helper"}}"#;
        let err = found(config, "r.example").err().map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("r.example"), "{err}");
    }
}
