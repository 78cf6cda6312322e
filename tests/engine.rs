//! Real-daemon tests of the Engine wrapper (no Python involved). Those that
//! need the Docker Engine are ignored by a plain `cargo test` (the fast tier);
//! the full tier runs them with `cargo test -- --include-ignored`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use _native::engine::{CreateSpec, Engine};
use _native::error::Error;
use futures_util::StreamExt;

const BASE_IMAGE: &str = "wool-docker-base:bookworm";

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

#[tokio::test]
#[ignore = "needs the Docker Engine"]
async fn connect_negotiates_the_daemons_api_version() {
    let engine = Engine::connect(None)
        .await
        .expect("the Docker Engine must be running");
    let (major, minor) = engine.api_version().split_once('.').unwrap();
    assert_eq!(major, "1");
    assert!(
        minor.parse::<u32>().unwrap() >= 24,
        "{}",
        engine.api_version()
    );
    engine.ping().await.unwrap();
}

#[tokio::test]
async fn connect_to_a_missing_socket_is_unreachable() {
    let err = match Engine::connect(Some("unix:///nonexistent/docker.sock")).await {
        Err(e) => e,
        Ok(_) => panic!("connected to a socket that does not exist"),
    };
    assert!(err.is_unreachable(), "{err}");
    assert!(matches!(err, Error::SocketMissing { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("socket /nonexistent/docker.sock does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn a_socket_nobody_listens_on_is_refused_not_missing() {
    // A daemon that died leaves its socket file behind: the connection is
    // refused, which is not the same as a socket that is not there.
    let dir = std::env::temp_dir().join(format!("wool-docker-stale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let host = format!("unix://{}", path.display());
    let err = match Engine::connect(Some(&host)).await {
        Err(e) => e,
        Ok(_) => panic!("connected to a socket nobody listens on"),
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(err, Error::DaemonUnreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("start the daemon"), "{err}");
}

#[tokio::test]
#[ignore = "needs the Docker Engine"]
async fn missing_image_and_network_are_named() {
    let engine = Engine::connect(None).await.unwrap();
    let image = unique("no-such-image");
    match engine.image(&image).await {
        Err(Error::ImageNotFound { image: named }) => assert_eq!(named, image),
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
    let network = unique("no-such-network");
    match engine.network(&network).await {
        Err(Error::NetworkNotFound { network: named }) => assert_eq!(named, network),
        other => panic!("expected NetworkNotFound, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs the Docker Engine"]
async fn container_lifecycle_is_listed_and_streamed_by_label() {
    let engine = Engine::connect(None).await.unwrap();
    let label = unique("wool.docker.test.rust");
    let name = unique("wdt-rust");
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut events = engine.container_events(&[format!("{label}=1")], Some(since));
    let spec = CreateSpec {
        name: name.clone(),
        image: BASE_IMAGE.to_owned(),
        labels: BTreeMap::from([(label.clone(), "1".to_owned())]),
        env: vec![],
        ..Default::default()
    };
    let id = engine.create_container(&spec).await.unwrap();
    let outcome = async {
        engine.start_container(&id).await?;
        let listed = engine.list(&[format!("{label}=1")], true).await?;
        let mut actions = Vec::new();
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(30));
        tokio::pin!(deadline);
        while !actions.iter().any(|a| a == "start") {
            tokio::select! {
                Some(event) = events.next() => {
                    let event = event?;
                    assert_eq!(event.id, id);
                    actions.push(event.action);
                }
                _ = &mut deadline => panic!("no start event within 30 s: {actions:?}"),
            }
        }
        Ok::<_, Error>((listed, actions))
    }
    .await;
    engine.remove(&id).await.unwrap();
    assert!(
        engine.inspect(&id).await.unwrap().is_none(),
        "container {name} left behind"
    );
    let (listed, actions) = outcome.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].name, name);
    // Only lifecycle actions are streamed: no create, attach or exec noise.
    assert_eq!(actions, vec!["start".to_owned()]);
}

#[tokio::test]
#[ignore = "needs the Docker Engine"]
async fn the_task_list_is_read_through_the_same_endpoint() {
    let engine = Engine::connect(None).await.unwrap();
    let role = engine.swarm_role().await.unwrap();
    match (engine.tasks().await, role) {
        (Ok(_), _swarm_role @ _native::engine::SwarmRole::Manager { .. }) => {}
        // Not a manager: the Engine's own answer comes back, read over the
        // same connection as any request (not a transport failure).
        (Err(Error::SwarmUnreadable { reason, .. }), role) => {
            assert!(
                !matches!(role, _native::engine::SwarmRole::Manager { .. }),
                "{reason}"
            );
            assert!(reason.contains("the Engine answered 503"), "{reason}");
            assert!(reason.contains("swarm"), "{reason}");
        }
        (other, role) => panic!("{role:?}: {:?}", other.map(|t| t.len())),
    }
}
