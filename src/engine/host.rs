//! What this process can do with an Engine's host, as [`Engine`] methods over
//! the pure rules of `reach`: where it reaches a worker's port, and whether
//! its files can be mounted into containers.

use super::client::Engine;
use super::model::NetworkInfo;
use super::reach;

impl Engine {
    /// The host that ports this Engine publishes are reached at from here.
    pub fn published_host(&self) -> String {
        reach::published_host(&self.host)
    }

    /// Whether this process can route to containers on `network` (see
    /// `reach::routes_to`); where it cannot, workers are published.
    pub async fn routes_to(&self, network: Option<&NetworkInfo>) -> bool {
        reach::routes_to(&self.host, network).await
    }

    /// Whether files of this process can be bind-mounted into this Engine's
    /// containers (see `reach::shares_files`).
    pub async fn shares_files(&self) -> bool {
        reach::shares_files(&self.host).await
    }
}
