//! The ready line: what a worker's server prints once its port is bound, read by
//! the owner that started it and by every discovery that follows it.

/// The line the worker image prints once its gRPC port is bound.
pub const READY_PREFIX: &str = "wool-docker ready ";
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
        })
    }
}
