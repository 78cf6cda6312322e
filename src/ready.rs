//! The ready line: what a worker's server prints once its port is bound, read by
//! the owner that started it and by every discovery that follows it.

use crate::labels::{self, Extra};

/// The line the worker image prints once its gRPC port is bound.
pub const READY_PREFIX: &str = "wool-docker ready ";
/// The line a standby container prints once it is parked: interpreter up,
/// wool imported, no server bound, waiting for its claim on stdin.
pub const PARKED_PREFIX: &str = "wool-docker parked ";

/// What a worker's ready line (or its healthcheck) told about its server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// Container id.
    pub id: String,
    /// When it was seen, Unix nanoseconds (the Engine's log stamp where known).
    pub at_ns: i64,
    /// The wool version the server reported.
    pub version: Option<String>,
    /// The server's pid inside the container.
    pub pid: Option<i64>,
    /// The worker's metadata as the line states it, when it is complete and
    /// well formed. Only a standby container's record is taken from here
    /// (`labels::STANDBY`); every other container's labels are its word.
    pub published: Option<Published>,
    /// A Swarm worker's task on another node (no local listing shows it).
    pub remote: Option<Box<Remote>>,
}

/// A Swarm worker's task on another node, as its manager describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The manager's Engine address: only discovery of that Engine follows it.
    pub manager: String,
    /// Its container, as a poll of the manager would describe it.
    pub container: crate::engine::ContainerInfo,
}

/// A worker's metadata as its ready line states it: for a claimed standby
/// container, the only place it is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Worker uid, lower-case UUID text.
    pub uid: String,
    /// Capability tags, sorted.
    pub tags: Vec<String>,
    /// JSON object text of strings to strings.
    pub extra: String,
    /// Serves TLS.
    pub secure: bool,
    /// Workload identity.
    pub identity: Option<String>,
    /// JSON object text of channel options, when given.
    pub options: Option<String>,
}

impl Ready {
    /// Read a ready line's text, if it is one.
    pub fn parse(id: &str, at_ns: i64, line: &str) -> Option<Ready> {
        let json = line.strip_prefix(READY_PREFIX)?;
        let fields: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        Some(Ready {
            id: id.to_owned(),
            at_ns,
            version: fields
                .get("version")
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            pid: fields.get("pid").and_then(|v| v.as_i64()),
            published: Published::read(&fields),
            remote: None,
        })
    }
}

impl Published {
    /// The metadata of a ready line's fields; `None` unless every one is there
    /// and well formed (a record is never half taken from a line).
    fn read(fields: &serde_json::Value) -> Option<Published> {
        let uid = fields.get("uid")?.as_str().filter(|v| labels::is_uuid(v))?;
        let tags = fields
            .get("tags")?
            .as_array()?
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?;
        let extra: Extra = serde_json::from_value(fields.get("extra")?.clone()).ok()?;
        let identity = match fields.get("identity")? {
            serde_json::Value::Null => None,
            v => Some(v.as_str()?.to_owned()),
        };
        let options = match fields.get("options") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(labels::options_json(
                &serde_json::from_value(v.clone()).ok()?,
            )),
        };
        let mut tags = tags;
        tags.sort();
        Some(Published {
            uid: uid.to_ascii_lowercase(),
            tags,
            extra: extra.to_json(),
            secure: fields.get("secure")?.as_bool()?,
            identity,
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_line_publishes_the_worker_and_a_partial_one_does_not() {
        let line = format!(
            "{READY_PREFIX}{{\"uid\":\"6F0C1A52-3A70-4A36-9A4B-0B7F3D2A9C11\",\"pid\":9,\
             \"version\":\"0.15.7\",\"secure\":false,\"identity\":null,\
             \"tags\":[\"b\",\"a\"],\"extra\":{{\"k\":\"v\"}},\"options\":{{\"compression\":0}}}}"
        );
        let ready = Ready::parse("c", 1, &line).unwrap_or_default();
        let published = ready.published.unwrap_or_default();
        assert_eq!(published.uid, "6f0c1a52-3a70-4a36-9a4b-0b7f3d2a9c11");
        assert_eq!(published.tags, ["a", "b"]);
        assert_eq!(published.extra, r#"{"k":"v"}"#);
        assert_eq!(published.options.as_deref(), Some(r#"{"compression":0}"#));
        for broken in [
            r#""uid":"nope""#,
            r#""extra":{"k":1}"#,
            r#""tags":[1]"#,
            r#""secure":"yes""#,
        ] {
            let key = broken.split(':').next().unwrap_or_default();
            let fields: String = [
                r#""uid":"6f0c1a52-3a70-4a36-9a4b-0b7f3d2a9c11""#,
                r#""tags":[]"#,
                r#""extra":{}"#,
                r#""secure":false"#,
                r#""identity":null"#,
            ]
            .iter()
            .map(|f| if f.starts_with(key) { broken } else { f })
            .collect::<Vec<_>>()
            .join(",");
            let ready = Ready::parse("c", 1, &format!("{READY_PREFIX}{{{fields}}}"));
            assert_eq!(ready.map(|r| r.published), Some(None), "{broken}");
        }
    }
}
