//! What both ends of the feed share: the request and the wire format. Pure, so
//! it is tested exhaustively.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::labels::WorkerRecord;
use crate::scope::{Change, Scope};

/// Where the feed socket is mounted inside a container.
pub const CONTAINER_PATH: &str = "/run/wool-docker/feed.sock";
/// The variable telling a container's subscribers where the feed is.
pub const ENV: &str = "WOOL_DOCKER_FEED";
/// The variable holding the owner's token in its containers: a discovery built
/// there with the default owner filter means the owner's workers, the only
/// ones its feed serves.
pub const OWNER_ENV: &str = "WOOL_DOCKER_OWNER";
/// Largest request line; a scope is a few hundred bytes.
pub const MAX_REQUEST: usize = 4096;
/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest line a client accepts: a batch of 1024 records with room to spare
/// (a bound of the feed's own, far above an output line's `lines::MAX_LINE`).
pub(crate) const MAX_BATCH: usize = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------
// The request: parsed, then authorized. Pure, so it can be tested exhaustively.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    selector: BTreeMap<String, String>,
    network: Option<String>,
    /// The scope's owner filter; absent or null: none.
    #[serde(default)]
    owner: Option<String>,
}

/// Parse one request line (`line` ends at its `\n`, which is not included).
pub fn parse_request(line: &[u8]) -> std::result::Result<Scope, String> {
    let text = std::str::from_utf8(line).map_err(|_| "the request is not UTF-8".to_owned())?;
    let request: Request =
        serde_json::from_str(text).map_err(|e| format!("not a wool-docker feed request ({e})"))?;
    let bad = |s: &str| s.is_empty() || s.chars().any(char::is_control);
    if request.selector.is_empty() || request.selector.keys().any(|k| bad(k)) {
        return Err("the selector must name at least one label".to_owned());
    }
    if request
        .selector
        .values()
        .any(|v| v.chars().any(char::is_control))
        || request.network.as_deref().is_some_and(bad)
        || request.owner.as_deref().is_some_and(bad)
    {
        return Err(
            "the scope holds control characters, an empty network or an empty owner".to_owned(),
        );
    }
    Ok(Scope {
        selector: request.selector,
        network: request.network,
        owner: request.owner,
    })
}

/// The scope a request asks for, if the owner serves it.
pub fn authorize<'a, E>(
    line: &[u8],
    served: &'a HashMap<Scope, E>,
) -> std::result::Result<(Scope, &'a E), String> {
    let scope = parse_request(line)?;
    match served.get(&scope) {
        Some(engine) => Ok((scope, engine)),
        None => Err(format!(
            "this owner serves only the scopes it subscribes to, and not {}; \
             nested routines see the pool's own DockerDiscovery",
            describe(&scope)
        )),
    }
}

pub(crate) fn describe(scope: &Scope) -> String {
    let labels: Vec<String> = scope
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut text = labels.join(",");
    if let Some(n) = &scope.network {
        text.push_str(&format!(" on network {n}"));
    }
    if let Some(owner) = &scope.owner {
        text.push_str(&format!(" of owner {owner}"));
    }
    text
}

// ---------------------------------------------------------------------------
// The wire format of the owner's answers.

#[derive(Serialize, Deserialize)]
pub(crate) struct Batch {
    pub(crate) changes: Vec<Wire>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct Wire {
    pub(crate) kind: Kind,
    pub(crate) record: WorkerRecord,
    pub(crate) at: i64,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Added,
    Updated,
    Dropped,
}

/// One batch as a line; warnings stay with the owner (they name containers
/// outside the scope's records).
pub(crate) fn encode(batch: &[Change]) -> Option<String> {
    let changes: Vec<Wire> = batch
        .iter()
        .filter_map(|change| {
            let (kind, record, at) = match change {
                Change::Added(r, at) => (Kind::Added, r, *at),
                Change::Updated(r, at) => (Kind::Updated, r, *at),
                Change::Dropped(r, at) => (Kind::Dropped, r, *at),
                Change::Warning(_) => return None,
            };
            // Its readers are containers: a published worker is reached
            // from them at its address on the network.
            Some(Wire {
                kind,
                record: record.on_network(),
                at,
            })
        })
        .collect();
    if changes.is_empty() {
        return None;
    }
    serde_json::to_string(&Batch { changes })
        .ok()
        .map(|s| s + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> HashMap<Scope, ()> {
        HashMap::from([(
            Scope {
                selector: BTreeMap::from([("wool.worker".to_owned(), "true".to_owned())]),
                network: Some("wool".to_owned()),
                owner: None,
            },
            (),
        )])
    }

    #[test]
    fn a_served_scope_is_authorized() {
        let line = br#"{"selector":{"wool.worker":"true"},"network":"wool"}"#;
        assert!(authorize(line, &served()).is_ok());
    }

    #[test]
    fn the_owner_is_part_of_the_scope() {
        let mine = Scope {
            owner: Some("1000/m.b.1/42/7".to_owned()),
            ..served().into_keys().next().unwrap()
        };
        let served = HashMap::from([(mine.clone(), ())]);
        let line =
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":"1000/m.b.1/42/7"}"#;
        assert_eq!(authorize(line, &served).map(|(s, _)| s), Ok(mine));
        for line in [
            // Another owner's, no owner's, and a malformed owner.
            &br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":"1000/m.b.1/43/7"}"#[..],
            br#"{"selector":{"wool.worker":"true"},"network":"wool"}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":null}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":""}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":"a\nb"}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","owner":7}"#,
        ] {
            assert!(authorize(line, &served).is_err(), "{line:?}");
        }
    }

    #[test]
    fn other_scopes_and_http_are_refused() {
        for line in [
            &br#"{"selector":{"wool.worker":"true"},"network":null}"#[..],
            br#"{"selector":{"wool.worker":""},"network":"wool"}"#,
            br#"{"selector":{"wool.worker":"true"},"network":"wool","x":1}"#,
            br#"{"selector":{},"network":"wool"}"#,
            b"GET /_ping HTTP/1.1",
            b"GET /v1.41/containers/json HTTP/1.1\r",
            b"",
            b"\xff\xfe",
        ] {
            assert!(authorize(line, &served()).is_err(), "{line:?}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn scope() -> impl Strategy<Value = Scope> {
            (
                prop::collection::btree_map("[a-z.]{1,12}", "[a-z0-9]{0,6}", 1..4),
                prop::option::of("[a-z0-9-]{1,10}"),
                prop::option::of("[0-9]{1,4}/[a-z0-9.]{1,12}/[0-9]{1,5}/[0-9]{1,6}"),
            )
                .prop_map(|(selector, network, owner)| Scope {
                    selector,
                    network,
                    owner,
                })
        }

        fn request(scope: &Scope) -> Vec<u8> {
            serde_json::json!({
                "selector": scope.selector,
                "network": scope.network,
                "owner": scope.owner,
            })
            .to_string()
            .into_bytes()
        }

        /// HTTP-shaped input: request lines, headers and bodies glued with any
        /// line ending, as a smuggler would send them.
        fn http() -> impl Strategy<Value = Vec<u8>> {
            let part = prop_oneof![
                Just(b"GET /_ping HTTP/1.1".to_vec()),
                Just(b"POST /v1.41/containers/create HTTP/1.1".to_vec()),
                Just(b"Host: x".to_vec()),
                Just(b"Content-Length: 5".to_vec()),
                Just(b"Transfer-Encoding: chunked".to_vec()),
                Just(b" folded".to_vec()),
                Just(b"{\"Image\":\"x\"}".to_vec()),
                "[ -~]{0,20}".prop_map(String::into_bytes),
            ];
            let eol = prop_oneof![
                Just(b"\r\n".to_vec()),
                Just(b"\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(Vec::new())
            ];
            prop::collection::vec((part, eol), 1..8).prop_map(|parts| {
                parts
                    .into_iter()
                    .flat_map(|(p, e)| p.into_iter().chain(e))
                    .collect()
            })
        }

        proptest! {
            /// Whatever the bytes, the only thing that gets through is a scope
            /// the owner serves.
            #[test]
            fn nothing_but_a_served_scope_gets_through(
                served in prop::collection::vec(scope(), 0..4),
                line in prop::collection::vec(any::<u8>(), 0..256),
            ) {
                let served: HashMap<Scope, ()> = served.into_iter().map(|s| (s, ())).collect();
                if let Ok((scope, _)) = authorize(&line, &served) {
                    prop_assert!(served.contains_key(&scope));
                }
            }

            /// HTTP, however it is glued together, is never a feed request.
            #[test]
            fn http_is_never_a_request(
                served in prop::collection::vec(scope(), 0..4),
                line in http(),
            ) {
                let served: HashMap<Scope, ()> = served.into_iter().map(|s| (s, ())).collect();
                prop_assert!(authorize(&line, &served).is_err());
            }

            /// A served scope's own request always gets through, and one byte
            /// changed anywhere yields the same scope or a refusal.
            #[test]
            fn a_changed_request_is_the_same_scope_or_refused(
                scope in scope(),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let served = HashMap::from([(scope.clone(), ())]);
                let line = request(&scope);
                prop_assert_eq!(authorize(&line, &served).map(|(s, _)| s), Ok(scope.clone()));
                let mut changed = line.clone();
                let i = at.index(changed.len());
                changed[i] = byte;
                if let Ok((got, _)) = authorize(&changed, &served) {
                    prop_assert_eq!(got, scope);
                }
            }
        }
    }
}
