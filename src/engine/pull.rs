//! Images from registries: a pull policy applied before a start, pulls and
//! pushes with the credentials the docker CLI would use (see `auth`), and the
//! registry's refusals as errors that name their cause.
//!
//! Pulls of one image are single-flight per Engine: a burst of workers that
//! all find the image missing joins the one pull under way.

use std::sync::Arc;

use bollard::query_parameters::{CreateImageOptions, PushImageOptions};
use futures_util::future::FutureExt;
use futures_util::StreamExt;

use super::auth::{credentials_for, registry_of, repository_and_tag};
use super::client::Engine;
use super::convert::status_of;
use super::model::ImageInfo;
use crate::error::{Error, Result};
use crate::values::Pull;

impl Engine {
    /// The image `image` once `policy` is applied: inspected, and pulled
    /// first when it is missing (`missing`) or always (`always`).
    pub async fn ensure_image(&self, image: &str, policy: Pull) -> Result<ImageInfo> {
        match policy {
            Pull::Never => self.image(image).await,
            Pull::Missing => match self.image(image).await {
                Err(Error::ImageNotFound { .. }) => {
                    self.pull_shared(image).await?;
                    self.image(image).await
                }
                found => found,
            },
            Pull::Always => {
                self.pull_shared(image).await?;
                self.image(image).await
            }
        }
    }

    /// Pull `image`, or join the pull of it already under way.
    async fn pull_shared(&self, image: &str) -> Result<()> {
        let flight = {
            let mut flights = self
                .pulls
                .0
                .lock()
                .map_err(|_| Error::Internal("the pull table is poisoned".into()))?;
            flights
                .entry(image.to_owned())
                .or_insert_with(|| {
                    let engine = self.clone();
                    let image = image.to_owned();
                    // A task of its own: a caller that stops waiting does not
                    // stop the pull the others await.
                    let task = tokio::spawn(async move {
                        let pulled = engine.pull_image(&image).await.map_err(Arc::new);
                        engine.pulls.forget(&image);
                        pulled
                    });
                    async move {
                        task.await.unwrap_or_else(|e| {
                            Err(Arc::new(Error::Internal(format!("a pull failed: {e}"))))
                        })
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        flight.await.map_err(|e| replay(&e, image))
    }

    /// Pull `image` from its registry (one pull, not shared).
    pub async fn pull_image(&self, image: &str) -> Result<()> {
        let registry = registry_of(image).to_owned();
        let credentials = credentials(&registry).await?;
        let (repository, tag) = repository_and_tag(image);
        let options = CreateImageOptions {
            from_image: Some(repository.to_owned()),
            tag: tag.map(str::to_owned),
            ..Default::default()
        };
        tracing::info!(image = %image, registry = %registry, "pulling image");
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            let message = match item {
                Ok(info) => info.error_detail.and_then(|d| d.message),
                Err(e) => return Err(self.registry_err("pull", image, &registry, e)),
            };
            if let Some(message) = message {
                return Err(refusal("pull", image, &registry, None, &message));
            }
        }
        Ok(())
    }

    /// Push `image` (a local image) to its registry.
    pub async fn push_image(&self, image: &str) -> Result<()> {
        self.image(image).await?;
        let registry = registry_of(image).to_owned();
        let credentials = credentials(&registry).await?;
        let (repository, tag) = repository_and_tag(image);
        let options = PushImageOptions {
            tag: tag.map(str::to_owned),
            ..Default::default()
        };
        let mut stream = self
            .docker
            .push_image(repository, Some(options), credentials);
        while let Some(item) = stream.next().await {
            let message = match item {
                Ok(info) => info.error_detail.and_then(|d| d.message),
                Err(e) => return Err(self.registry_err("push", image, &registry, e)),
            };
            if let Some(message) = message {
                return Err(refusal("push", image, &registry, None, &message));
            }
        }
        Ok(())
    }

    fn registry_err(
        &self,
        verb: &'static str,
        image: &str,
        registry: &str,
        e: bollard::errors::Error,
    ) -> Error {
        match &e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => refusal(verb, image, registry, Some(*status_code), message),
            bollard::errors::Error::DockerStreamError { error } => {
                refusal(verb, image, registry, None, error)
            }
            _ => {
                let status = status_of(&e);
                match self.err("pull image", e) {
                    unreachable if unreachable.is_unreachable() => unreachable,
                    other => refusal(verb, image, registry, status, &other.to_string()),
                }
            }
        }
    }
}

/// The credentials for `registry`, read off the async threads (a helper is a
/// process run to its end).
pub(super) async fn credentials(
    registry: &str,
) -> Result<Option<bollard::auth::DockerCredentials>> {
    let registry = registry.to_owned();
    tokio::task::spawn_blocking(move || credentials_for(&registry))
        .await
        .map_err(|e| Error::Internal(format!("reading registry credentials failed: {e}")))?
}

/// What the Engine said of a pull or push, as the cause it names. The Engine
/// passes the registry's words on as text, so the text is what is read.
fn refusal(
    verb: &'static str,
    image: &str,
    registry: &str,
    status: Option<u16>,
    message: &str,
) -> Error {
    let image = image.to_owned();
    let registry = registry.to_owned();
    let text = message.to_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| text.contains(w));
    let message = message.trim().to_owned();
    if any(&[
        "unauthorized",
        "authentication required",
        "denied",
        "no basic auth credentials",
        "incorrect username or password",
    ]) {
        Error::RegistryDenied {
            verb,
            image,
            registry,
            message,
        }
    } else if status == Some(404)
        || any(&[
            "manifest unknown",
            "name unknown",
            ": not found",
            "not found: ",
        ])
    {
        Error::ImageNotInRegistry { image, registry }
    } else if any(&[
        "connection refused",
        "no such host",
        "i/o timeout",
        "dial tcp",
        "x509",
        "tls:",
        "http response to https client",
        "no route to host",
        "network is unreachable",
        "timeout exceeded",
    ]) {
        Error::RegistryUnreachable {
            verb,
            image,
            registry,
            message,
        }
    } else {
        Error::PullFailed {
            verb,
            image,
            registry,
            message,
        }
    }
}

/// The error of a shared pull, for one of the callers that awaited it.
fn replay(e: &Error, image: &str) -> Error {
    match e {
        Error::ImageNotInRegistry { image, registry } => Error::ImageNotInRegistry {
            image: image.clone(),
            registry: registry.clone(),
        },
        Error::RegistryDenied {
            verb,
            image,
            registry,
            message,
        } => Error::RegistryDenied {
            verb,
            image: image.clone(),
            registry: registry.clone(),
            message: message.clone(),
        },
        Error::RegistryUnreachable {
            verb,
            image,
            registry,
            message,
        } => Error::RegistryUnreachable {
            verb,
            image: image.clone(),
            registry: registry.clone(),
            message: message.clone(),
        },
        Error::RegistryCredentials { registry, reason } => Error::RegistryCredentials {
            registry: registry.clone(),
            reason: reason.clone(),
        },
        other => Error::PullFailed {
            verb: "pull",
            image: image.to_owned(),
            registry: registry_of(image).to_owned(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: Option<u16>, message: &str) -> &'static str {
        match refusal("pull", "r:5000/w:1", "r:5000", status, message) {
            Error::RegistryDenied { .. } => "denied",
            Error::ImageNotInRegistry { .. } => "missing",
            Error::RegistryUnreachable { .. } => "unreachable",
            Error::PullFailed { .. } => "failed",
            _ => "other",
        }
    }

    #[test]
    fn the_engines_words_name_the_cause() {
        for (status, message, want) in [
            (
                Some(404),
                "manifest for r:5000/w:1 not found: manifest unknown: manifest unknown",
                "missing",
            ),
            (
                Some(500),
                "Head \"https://r:5000/v2/w/manifests/1\": no basic auth credentials",
                "denied",
            ),
            (
                Some(500),
                "Get \"https://r:5000/v2/\": unauthorized: authentication required",
                "denied",
            ),
            (
                Some(404),
                "pull access denied for w, repository does not exist or may require 'docker login'",
                "denied",
            ),
            (
                Some(500),
                "Get \"https://r:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused",
                "unreachable",
            ),
            (
                Some(500),
                "Get \"https://r:5000/v2/\": x509: certificate signed by unknown authority",
                "unreachable",
            ),
            (Some(500), "the disk is full", "failed"),
        ] {
            assert_eq!(kind(status, message), want, "{message}");
        }
    }

    #[test]
    fn a_shared_failure_reads_the_same_for_every_caller() {
        let first = Error::RegistryDenied {
            verb: "pull",
            image: "r:5000/w:1".into(),
            registry: "r:5000".into(),
            message: "unauthorized".into(),
        };
        assert_eq!(replay(&first, "r:5000/w:1").to_string(), first.to_string());
        let other = replay(&Error::Internal("x".into()), "r:5000/w:1");
        assert!(matches!(other, Error::PullFailed { .. }), "{other}");
    }
}
